#!/usr/bin/env node
// The node-proxy baseline: what a Node shop puts in front of a server — node:http
// with a keep-alive agent, streaming both ways, no buffering; upgrades (WebSockets)
// pass through as raw sockets after the 101, as http-proxy does it.
// Usage: node bench/node-proxy.mjs TARGET_PORT -> prints {"port": N} when listening.
import { Agent, createServer, request } from "node:http";

const targetPort = Number(process.argv[2]);
const agent = new Agent({ keepAlive: true, maxSockets: 256 });

const server = createServer((req, res) => {
  const upstream = request(
    { host: "127.0.0.1", port: targetPort, method: req.method, path: req.url, headers: req.headers, agent },
    (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    },
  );
  upstream.on("error", () => {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  });
  res.on("close", () => upstream.destroy());
  req.pipe(upstream);
});
server.on("upgrade", (req, socket, head) => {
  // No agent: an upgraded socket never goes back to a pool.
  const upstream = request({ host: "127.0.0.1", port: targetPort, method: req.method, path: req.url, headers: req.headers });
  upstream.on("upgrade", (up, upSocket, upHead) => {
    const lines = [`HTTP/1.1 101 ${up.statusMessage}`];
    for (let i = 0; i < up.rawHeaders.length; i += 2) lines.push(`${up.rawHeaders[i]}: ${up.rawHeaders[i + 1]}`);
    socket.write(`${lines.join("\r\n")}\r\n\r\n`);
    if (upHead.length > 0) socket.write(upHead);
    if (head.length > 0) upSocket.write(head);
    upSocket.setNoDelay(true);
    socket.setNoDelay(true);
    upSocket.pipe(socket).pipe(upSocket);
    const close = () => (upSocket.destroy(), socket.destroy());
    upSocket.on("error", close).on("close", close);
    socket.on("error", close).on("close", close);
  });
  // Refused (no 101): pass the answer on and close.
  upstream.on("response", (up) => {
    socket.end(`HTTP/1.1 ${up.statusCode} ${up.statusMessage}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    up.resume();
  });
  upstream.on("error", () => socket.destroy());
  socket.on("error", () => upstream.destroy());
  upstream.end();
});
server.keepAliveTimeout = 120_000;
server.listen(0, "127.0.0.1", () => process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`));
process.on("SIGTERM", () => process.exit(0));
