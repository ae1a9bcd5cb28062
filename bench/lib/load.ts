import { Agent, type IncomingMessage, request } from "node:http";
import { Pool } from "undici";
import { run } from "./proc.js";

export interface WrkResult {
  rps: number;
  /** Requests completed in the run. */
  requests: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

/** Closed-loop load with wrk (C, one thread: it leaves the cores to what is measured); `headers` go with every request. */
export async function wrk(url: string, connections: number, seconds: number, headers: Record<string, string> = {}): Promise<WrkResult> {
  const h = Object.entries(headers).flatMap(([name, value]) => ["-H", `${name}: ${value}`]);
  const out = await run("wrk", ["-t1", `-c${connections}`, `-d${seconds}s`, "--latency", ...h, url]);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const requests = Number(/(\d+) requests in /.exec(out)?.[1]);
  const errors = [...out.matchAll(/(?:Non-2xx or 3xx responses|Socket errors: .*?timeout) (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
  return { rps, requests, p50Ms: latencyMs(out, "50%"), p99Ms: latencyMs(out, "99%"), errors };
}

function latencyMs(out: string, pct: string): number {
  const m = new RegExp(`^\\s*${pct}\\s+([\\d.]+)(us|ms|s)\\s*$`, "m").exec(out);
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === "us" ? v / 1000 : m[2] === "s" ? v * 1000 : v;
}

export interface OpenLoopResult {
  rate: number;
  sent: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

/**
 * Open-loop load at a fixed arrival rate. Requests are due on a fixed
 * schedule whether or not earlier ones have answered, and latency is measured
 * from when each was due, not from when it was sent: a closed-loop tool waits
 * for slow answers and so never sees the queue they cause (coordinated
 * omission).
 */
export async function openLoop(url: string, rate: number, seconds: number): Promise<OpenLoopResult> {
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections: 256, pipelining: 1 });
  const latencies: number[] = [];
  let errors = 0;
  const total = Math.round(rate * seconds);
  const start = performance.now();
  const inFlight: Array<Promise<void>> = [];
  let sent = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      const due = Math.min(total, Math.floor(((now - start) / 1000) * rate));
      for (; sent < due; sent++) {
        const dueAt = start + (sent / rate) * 1000;
        inFlight.push(
          pool
            .request({ path: u.pathname + u.search, method: "GET" })
            .then(async (res) => {
              await res.body.dump();
              if (res.statusCode !== 200) errors++;
              latencies.push(performance.now() - dueAt);
            })
            .catch(() => {
              errors++;
            }),
        );
      }
      if (sent >= total) return resolve();
      setTimeout(tick, 1);
    };
    tick();
  });
  await Promise.all(inFlight);
  await pool.close();
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return { rate, sent, errors, p50Ms: at(0.5), p99Ms: at(0.99), p999Ms: at(0.999), maxMs: latencies.at(-1) ?? NaN };
}

const agent = new Agent({ keepAlive: false });

/** Downloads and discards `url`; resolves with the bytes received. */
export function download(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    request(url, { agent }, (res) => {
      if (res.statusCode !== 200) return void failure(url, res).then(reject, reject);
      let bytes = 0;
      res.on("data", (c: Buffer) => (bytes += c.length));
      res.on("end", () => resolve(bytes));
      res.on("error", reject);
    })
      .on("error", reject)
      .end();
  });
}

const UPLOAD_CHUNK = Buffer.alloc(64 * 1024, "u");

/** Streams `size` bytes to `url` (a sink) with back-pressure; resolves when the answer is in. */
export function upload(url: string, size: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: "POST", agent, headers: { "content-length": String(size) } }, (res) => {
      // Answered early with an error: stop sending the rest.
      if (res.statusCode !== 200) return void failure(url, res).then((e) => (req.destroy(), reject(e)), reject);
      res.resume();
      res.on("end", () => resolve());
    });
    req.on("error", reject);
    let sent = 0;
    const write = () => {
      while (sent < size) {
        const n = Math.min(UPLOAD_CHUNK.length, size - sent);
        sent += n;
        if (!req.write(n === UPLOAD_CHUNK.length ? UPLOAD_CHUNK : UPLOAD_CHUNK.subarray(0, n))) return void req.once("drain", write);
      }
      req.end();
    };
    write();
  });
}

/** An error for a non-200 answer, with the relay's error code when the body is Ferry's JSON error. */
async function failure(url: string, res: IncomingMessage): Promise<Error> {
  let body = "";
  try {
    for await (const c of res) if (body.length < 2048) body += String(c);
  } catch {
    // cut off: the status is what matters
  }
  let code = "";
  try {
    code = ` ${(JSON.parse(body) as { error?: { code?: string } }).error?.code ?? ""}`.trimEnd();
  } catch {
    // not Ferry's JSON error
  }
  return new Error(`HTTP ${res.statusCode}${code} from ${url}`);
}

/** Starts a download and stops reading after its first bytes: a client that stalls. */
export function stall(url: string): Promise<{ release(): void }> {
  return new Promise((resolve, reject) => {
    request(url, { agent }, (res: IncomingMessage) => {
      res.once("data", () => {
        res.pause();
        resolve({ release: () => res.destroy() });
      });
    })
      .on("error", reject)
      .end();
  });
}

/** Runs `fn` and returns seconds taken. */
export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1000;
}
