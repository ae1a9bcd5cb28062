import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** What the test target saw of one request. */
export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  rawHeaders: string[];
}

export interface TestTarget {
  url: string;
  server: Server;
  /** Every request head the target received, in order. */
  seen: SeenRequest[];
  /** Resolves with the next request whose connection/request was aborted by the peer. */
  nextAbort(): Promise<string>;
  /** Bytes the /stall endpoint managed to hand to its socket so far. */
  stalledBytesWritten(): number;
  close(): Promise<void>;
}

const CHUNK = 64 * 1024;
/** patternAt() serves up to this many bytes per call. */
export const PATTERN_CHUNK = CHUNK;
/** 256 KiB of pseudo-random bytes; the test pattern repeats it, so both ends can produce and hash any length cheaply. */
const PATTERN = (() => {
  const buf = Buffer.allocUnsafe(CHUNK * 4);
  for (let i = 0; i < buf.length; i++) buf[i] = Math.imul(i, 2654435761) >>> 24;
  return buf;
})();

/** SHA-256 of `size` bytes of the /bytes pattern. */
export function patternSha256(size: number): string {
  const hash = createHash("sha256");
  for (let off = 0; off < size; off += CHUNK) hash.update(patternAt(off, Math.min(CHUNK, size - off)));
  return hash.digest("hex");
}

/** `length` (<= 64 KiB) pattern bytes starting at a 64 KiB-aligned `offset`. */
export function patternAt(offset: number, length: number): Buffer {
  // The pattern repeats every 256 KiB (a multiple of CHUNK), so slices of one buffer serve any aligned offset.
  const start = offset % PATTERN.length;
  return PATTERN.subarray(start, start + length);
}

/**
 * A real HTTP target with the endpoints the tests need:
 * - /echo: answers with the request body, method, and the headers it got (as JSON header x-seen)
 * - /bytes?size=N: N pattern bytes, streamed with backpressure
 * - /sink: reads the body, answers {"bytes", "sha256"}
 * - /slow?ms=N: answers after N ms
 * - /trailers: chunked body then trailers
 * - /cookies: two Set-Cookie headers
 * - /hop: answers with hop-by-hop headers that must not reach the client
 * - /stall?size=N: like /bytes, counts how far it got (for back-pressure tests)
 * - /hang: never answers (abort tests)
 * - /json: the request head as JSON
 * - /stream-echo: full duplex, request chunks echoed as they arrive
 * - /early: 413 at once, before reading the body
 */
export async function startTestTarget(name = "target"): Promise<TestTarget> {
  const seen: SeenRequest[] = [];
  const abortWaiters: Array<(url: string) => void> = [];
  const aborts: string[] = [];
  let stalledBytes = 0;

  const onAbort = (url: string) => {
    const w = abortWaiters.shift();
    if (w) w(url);
    else aborts.push(url);
  };

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    seen.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders });
    // Appended, not resolved: a path such as "//%25/" (which the relay rightly passes on) would be read as a host.
    const url = new URL(`http://x${req.url!}`);
    res.on("close", () => {
      if (!res.writableFinished) onAbort(req.url!);
    });
    switch (url.pathname) {
      case "/echo": {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
          const body = Buffer.concat(chunks);
          res.writeHead(200, { "content-type": "application/octet-stream", "x-method": req.method!, "x-target": name });
          res.end(body);
        });
        return;
      }
      case "/stream-echo":
        // Full duplex: each request chunk goes straight back while the request is still coming.
        res.writeHead(200, { "content-type": "application/octet-stream" });
        res.flushHeaders();
        req.on("data", (c: Buffer) => res.write(c));
        req.on("end", () => res.end());
        return;
      case "/json": {
        req.resume();
        req.on("end", () => {
          const body = JSON.stringify({ method: req.method, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders, target: name });
          res.writeHead(200, { "content-type": "application/json", "x-target": name });
          res.end(body);
        });
        return;
      }
      case "/bytes":
      case "/stall": {
        const size = Number(url.searchParams.get("size") ?? 1024);
        const stall = url.pathname === "/stall";
        res.writeHead(200, { "content-type": "application/octet-stream", "content-length": size });
        let off = 0;
        const write = () => {
          while (off < size) {
            const n = Math.min(CHUNK, size - off);
            const ok = res.write(patternAt(off, n));
            off += n;
            if (stall) stalledBytes = off;
            if (!ok) return void res.once("drain", write);
          }
          res.end();
        };
        write();
        return;
      }
      case "/sink": {
        const hash = createHash("sha256");
        let bytes = 0;
        req.on("data", (c: Buffer) => {
          bytes += c.length;
          hash.update(c);
        });
        req.on("end", () => {
          res.writeHead(200, { "content-type": "application/json" });
          res.end(JSON.stringify({ bytes, sha256: hash.digest("hex") }));
        });
        return;
      }
      case "/slow": {
        const ms = Number(url.searchParams.get("ms") ?? 1000);
        req.resume();
        const timer = setTimeout(() => res.end("slow done"), ms);
        res.on("close", () => clearTimeout(timer));
        return;
      }
      case "/trailers": {
        req.resume();
        res.writeHead(200, { "content-type": "text/plain", trailer: "x-checksum, x-status" });
        res.write("part one;");
        res.write("part two");
        res.addTrailers({ "x-checksum": "abc123", "x-status": "done" });
        res.end();
        return;
      }
      case "/cookies":
        req.resume();
        res.setHeader("set-cookie", ["a=1; Path=/", "b=2; Path=/; HttpOnly"]);
        res.end("cookies");
        return;
      case "/hop":
        req.resume();
        res.writeHead(200, {
          connection: "close, x-hop-secret",
          "x-hop-secret": "must not leak",
          "keep-alive": "timeout=5",
          "proxy-authenticate": "Basic",
          "x-end-to-end": "kept",
        });
        res.end("hop");
        return;
      case "/early":
        // Answers before reading the request body (like a 413 from a size limit); Node then
        // discards the rest. (Closing at once instead races the client's writes in any
        // HTTP/1.1 client: EPIPE may win over reading the answer.)
        res.writeHead(413, { "content-type": "text/plain" });
        res.end("too big");
        return;
      case "/hang":
        req.resume();
        return; // never answers
      default:
        req.resume();
        res.writeHead(404, { "content-type": "text/plain" });
        res.end(`no ${url.pathname}`);
    }
  };

  const server = createServer(handler);
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    seen,
    nextAbort() {
      const ready = aborts.shift();
      if (ready) return Promise.resolve(ready);
      return new Promise((resolve) => abortWaiters.push(resolve));
    },
    stalledBytesWritten: () => stalledBytes,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
