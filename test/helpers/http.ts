import { createHash } from "node:crypto";
import { type IncomingHttpHeaders, request as httpRequest } from "node:http";
import { connect as http2Connect, type ClientHttp2Session } from "node:http2";
import { PATTERN_CHUNK, patternAt } from "./targets.js";

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
  trailers: Record<string, string | undefined>;
}

/**
 * One HTTP/1.1 request with node:http (raw header control, trailers). The path
 * is sent exactly as written: no dot-segment removal, unlike WHATWG URL parsing.
 */
export function request(
  url: string,
  opts: { method?: string; headers?: Record<string, string | string[]>; body?: string | Buffer; signal?: AbortSignal } = {},
): Promise<Reply> {
  const origin = /^https?:\/\/[^/]+/.exec(url)![0];
  const { hostname, port } = new URL(origin);
  const path = url.slice(origin.length) || "/";
  return new Promise((resolve, reject) => {
    const req = httpRequest({ hostname, port, path, method: opts.method ?? "GET", headers: opts.headers, signal: opts.signal }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({
          status: res.statusCode!,
          headers: res.headers,
          rawHeaders: res.rawHeaders,
          body: Buffer.concat(chunks),
          trailers: res.trailers,
        }),
      );
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(opts.body);
  });
}

/** GET that hashes the body as it streams (never holds it), for large downloads. */
export function download(url: string): Promise<{ status: number; bytes: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    httpRequest(url, (res) => {
      const hash = createHash("sha256");
      let bytes = 0;
      res.on("data", (c: Buffer) => {
        bytes += c.length;
        hash.update(c);
      });
      res.on("end", () => resolve({ status: res.statusCode!, bytes, sha256: hash.digest("hex") }));
      res.on("error", reject);
    })
      .on("error", reject)
      .end();
  });
}

/** POSTs `size` bytes of the test pattern with back-pressure and returns the answer's JSON. */
export function upload(url: string, size: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: "POST", headers: { "content-length": String(size) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve(JSON.parse(Buffer.concat(chunks).toString("utf8"))));
      res.on("error", reject);
    });
    req.on("error", reject);
    let offset = 0;
    const write = () => {
      while (offset < size) {
        const n = Math.min(PATTERN_CHUNK, size - offset);
        const ok = req.write(patternAt(offset, n));
        offset += n;
        if (!ok) return void req.once("drain", write);
      }
      req.end();
    };
    write();
  });
}

/** A JSON body parsed from a reply. */
export function json<T = Record<string, unknown>>(reply: Reply): T {
  return JSON.parse(reply.body.toString("utf8")) as T;
}

/** An HTTP/2 cleartext (h2c) session to a relay; close() it after use. */
export function h2c(origin: string): ClientHttp2Session {
  return http2Connect(origin);
}

/** One request on an HTTP/2 session. */
export function h2request(
  session: ClientHttp2Session,
  path: string,
  opts: { method?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: string; trailers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":method": opts.method ?? "GET", ":path": path, ...opts.headers }, { endStream: opts.body === undefined });
    let headers: Record<string, unknown> = {};
    let trailers: Record<string, unknown> = {};
    let body = "";
    stream.on("response", (h) => (headers = h));
    stream.on("trailers", (t) => (trailers = t));
    stream.setEncoding("utf8");
    stream.on("data", (d: string) => (body += d));
    stream.on("end", () => resolve({ status: Number(headers[":status"]), headers, body, trailers }));
    stream.on("error", reject);
    if (opts.body !== undefined) stream.end(opts.body);
  });
}
