import { WebSocket } from "ws";
import { percentile } from "./percentile.js";

/** Opens `n` WebSockets to `url` (100 at a time: a burst of thousands is a SYN flood, not a benchmark). */
export async function openSockets(url: string, n: number): Promise<WebSocket[]> {
  const sockets: WebSocket[] = [];
  try {
    for (let i = 0; i < n; i += 100) {
      sockets.push(...(await Promise.all(Array.from({ length: Math.min(100, n - i) }, () => openSocket(url)))));
    }
    return sockets;
  } catch (e) {
    closeSockets(sockets);
    throw e;
  }
}

function openSocket(url: string): Promise<WebSocket> {
  // No compression (the target does not offer it either): frames are carried, not deflated.
  const ws = new WebSocket(url, { perMessageDeflate: false });
  return new Promise((resolve, reject) => {
    ws.once("open", () => {
      ws.removeAllListeners("error");
      // A socket that fails later fails the run that uses it, not the process.
      ws.on("error", () => {});
      resolve(ws);
    });
    ws.once("unexpected-response", (_req, res) => {
      res.resume();
      reject(new Error(`WebSocket refused with HTTP ${res.statusCode} at ${url}`));
    });
    ws.once("error", reject);
  });
}

export function closeSockets(sockets: WebSocket[]): void {
  for (const ws of sockets) ws.terminate();
}

const GRACE_MS = 30_000;

/** One message of `payload` on each socket and its echo back: proves every socket works end to end. */
export async function echoOnce(sockets: WebSocket[], payload: Buffer): Promise<void> {
  // Zero seconds: each sends one message, and the echo arrives after the deadline, so none follows.
  await echoLoad(sockets, payload, 1, 0);
}

export interface EchoResult {
  /** Echoes received in the measured time. */
  messages: number;
  messagesPerSecond: number;
  /** Payload MB (10^6 bytes) echoed back per second; each byte crossed both ways. */
  mbPerSecond: number;
  p50Ms: number;
  p99Ms: number;
}

/**
 * Closed loop over open WebSockets: each keeps `inFlight` messages of
 * `payload` on the way and sends the next as an echo comes back, for
 * `seconds`. Round trip is measured from send to echo (echoes come back in
 * order). After the deadline nothing new is sent and the run waits for the
 * echoes still on the way, so the sockets are quiet for the next run.
 */
export async function echoLoad(sockets: WebSocket[], payload: Buffer, inFlight: number, seconds: number): Promise<EchoResult> {
  const latencies: number[] = [];
  let messages = 0;
  let stopped = false;
  let failure: Error | undefined;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  // Echoes that stop coming (a proxy that wedged) end the run instead of hanging it.
  let timer: NodeJS.Timeout | undefined;
  const wedged = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`echoes still missing ${GRACE_MS / 1000} s after the run`)), seconds * 1000 + GRACE_MS);
  });
  const runs = Promise.all(
    sockets.map(
      (ws) =>
        new Promise<void>((resolve, reject) => {
          const sentAt: number[] = [];
          const send = () => {
            sentAt.push(performance.now());
            ws.send(payload, { binary: true });
          };
          const done = (e?: Error) => {
            ws.off("message", onMessage);
            ws.off("close", onClose);
            if (e) reject(e);
            else resolve();
          };
          const onMessage = (data: Buffer) => {
            const now = performance.now();
            const t = sentAt.shift();
            if (t === undefined || data.length !== payload.length) return done(new Error(`unexpected echo of ${data.length} bytes`));
            if (now <= deadline) {
              messages++;
              latencies.push(now - t);
            } else stopped = true;
            if (!stopped && !failure) send();
            else if (sentAt.length === 0) done();
          };
          const onClose = () => done(failure ?? new Error("a WebSocket closed during the run"));
          ws.on("message", onMessage);
          ws.once("close", onClose);
          for (let i = 0; i < inFlight; i++) send();
        }).catch((e: Error) => {
          // One failing socket stops the others sending, so the run ends promptly.
          failure ??= e;
          stopped = true;
        }),
    ),
  );
  try {
    await Promise.race([runs, wedged]);
  } finally {
    clearTimeout(timer);
  }
  if (failure) throw failure;
  latencies.sort((a, b) => a - b);
  return {
    messages,
    messagesPerSecond: messages / seconds,
    mbPerSecond: (messages * payload.length) / 1e6 / seconds,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
  };
}
