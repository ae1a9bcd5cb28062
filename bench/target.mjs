#!/usr/bin/env node
// The benchmark target: the same small Node HTTP server behind every setup.
//   /1k                 1 KiB response
//   /bytes?size=N       N bytes, streamed with back-pressure
//   /sink               reads the request body, answers {"bytes": N}
//   /hang               never answers (idle exchanges)
//   /ws                 WebSocket (HTTP/1.1 Upgrade): echoes every message as it came
// Usage: node bench/target.mjs  -> prints {"port": N} on stdout when listening.
import { createServer } from "node:http";
import { WebSocketServer } from "ws";

const ONE_K = Buffer.alloc(1024, "x");
const CHUNK = Buffer.alloc(64 * 1024, "y");

const server = createServer((req, res) => {
  const url = req.url ?? "/";
  if (url === "/1k") {
    req.resume();
    res.writeHead(200, { "content-type": "text/plain", "content-length": ONE_K.length });
    res.end(ONE_K);
    return;
  }
  if (url.startsWith("/bytes")) {
    req.resume();
    const size = Number(new URL(url, "http://x").searchParams.get("size") ?? 0);
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": size });
    let sent = 0;
    const write = () => {
      while (sent < size) {
        const n = Math.min(CHUNK.length, size - sent);
        sent += n;
        if (!res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) return void res.once("drain", write);
      }
      res.end();
    };
    res.on("close", () => (sent = size));
    write();
    return;
  }
  if (url === "/sink") {
    let bytes = 0;
    req.on("data", (c) => (bytes += c.length));
    req.on("end", () => {
      const body = JSON.stringify({ bytes });
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
    });
    return;
  }
  if (url === "/hang") {
    req.resume();
    return;
  }
  req.resume();
  res.writeHead(404);
  res.end();
});
// No compression: the benchmark measures carrying frames, not deflating them.
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
server.on("upgrade", (req, socket, head) => {
  if (req.url !== "/ws") return void socket.end("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
  wss.handleUpgrade(req, socket, head, (ws) => ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary })));
});
server.keepAliveTimeout = 120_000;
server.listen(0, "127.0.0.1", () => process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`));
process.on("SIGTERM", () => process.exit(0));
