#!/usr/bin/env node
// The node-proxy baseline: what a Node shop puts in front of a server — node:http
// with a keep-alive agent, streaming both ways, no buffering.
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
server.keepAliveTimeout = 120_000;
server.listen(0, "127.0.0.1", () => process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`));
process.on("SIGTERM", () => process.exit(0));
