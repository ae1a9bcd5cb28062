import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type ClientSessionRequestOptions,
  connect as http2Connect,
  type OutgoingHttpHeaders,
  type Settings,
} from "node:http2";
import { isIP, connect as netConnect } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { hostPort } from "../../core/host-port.js";
import type { Logger } from "../../core/logger.js";
import type { TargetSpec } from "./connector-config.js";

/** Room for one stream on a session, taken by acquire(); request() uses it, release() gives it back unused. */
export interface H2Slot {
  /** Opens the stream (the slot is freed when it closes); throws what session.request throws. */
  request(headers: OutgoingHttpHeaders, options: ClientSessionRequestOptions): ClientHttp2Stream;
  release(): void;
}

export interface H2SessionPool {
  /**
   * A slot on a live session to the target, connecting if needed; "http1" when
   * the target chose HTTP/1.1 by ALPN. Rejects with the connect error.
   */
  acquire(target: TargetSpec): Promise<H2Slot | "http1">;
  close(): Promise<void>;
}

/**
 * HTTP/2 windows. Node's defaults (64 KiB per stream and per connection) cap a
 * stream at 64 KiB per round trip and cost ~4x throughput on large bodies.
 * The same numbers as the relay's server: 1 MiB per stream bounds what one
 * paused exchange can park here; 32 MiB per connection keeps many streams fast.
 */
const SETTINGS: Settings = { initialWindowSize: 1024 * 1024, enablePush: false };
const CONNECTION_WINDOW = 32 * 1024 * 1024;
/** HTTP/2 sessions hold buffered frames of every stream; Node's 10 MB default is tight for 32 MiB windows. */
const MAX_SESSION_MEMORY_MB = 64;
/** Like undici's default: a target that does not accept a connection in this time is unreachable. */
const CONNECT_TIMEOUT_MS = 10_000;
/** A session with no stream for this long is closed; the next request reconnects. */
const IDLE_TIMEOUT_MS = 60_000;
/** PING this often; a session that has not answered the previous PING by the next one is dead. */
const PING_INTERVAL_MS = 30_000;
/** More sessions than this per origin is no help: further streams queue on the least loaded one. */
const MAX_SESSIONS_PER_ORIGIN = 8;
/** A target once heard choosing HTTP/1.1 is asked again after this long (it may have been upgraded). */
const ALPN_MEMORY_MS = 5 * 60_000;
/** Fresh sessions that close before carrying the request: past this, the request fails. */
const MAX_CONNECT_ATTEMPTS = 3;

interface PooledSession {
  session: ClientHttp2Session;
  /** Streams open or reserved on it. */
  streams: number;
  /** The target sent GOAWAY: streams in progress finish, new ones go elsewhere. */
  goingAway: boolean;
  idleTimer: NodeJS.Timeout | undefined;
}

interface Origin {
  sessions: PooledSession[];
  /** One dial at a time per origin; every waiter shares its outcome. */
  dialing: Promise<PooledSession | "http1"> | undefined;
  /** When the target last chose HTTP/1.1 by ALPN (0: never, or forgotten). */
  http1Since: number;
}

/**
 * HTTP/2 client sessions to targets, one pool per origin: connects on first
 * use (h2c by prior knowledge, or TLS offering h2 and http/1.1 by ALPN),
 * reuses the session for every request, opens another when the target's
 * concurrent-stream limit is reached, and forgets sessions that close, go
 * away or stop answering PINGs, so the next request reconnects.
 */
export function createH2SessionPool(log: Logger): H2SessionPool {
  const origins = new Map<string, Origin>();
  let closed = false;

  const originFor = (target: TargetSpec): Origin => {
    let origin = origins.get(target.origin);
    if (!origin) {
      origin = { sessions: [], dialing: undefined, http1Since: 0 };
      origins.set(target.origin, origin);
    }
    return origin;
  };

  const reserve = (pooled: PooledSession): H2Slot => {
    pooled.streams++;
    clearTimeout(pooled.idleTimer);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      pooled.streams--;
      if (pooled.streams === 0 && !pooled.session.closed) {
        pooled.idleTimer = setTimeout(() => pooled.session.close(), IDLE_TIMEOUT_MS).unref();
      }
    };
    return {
      request(headers, options) {
        try {
          const stream = pooled.session.request(headers, options);
          stream.once("close", release);
          return stream;
        } catch (err) {
          release();
          throw err;
        }
      },
      release,
    };
  };

  return {
    async acquire(target) {
      const origin = originFor(target);
      // Each turn either finds room, or dials (at most MAX_SESSIONS_PER_ORIGIN times, since
      // every session dialed stays live or counts as a failure).
      for (let failures = 0; ; ) {
        if (closed) throw Object.assign(new Error("the connector is shutting down"), { code: "ERR_CONNECTOR_CLOSED" });
        if (origin.http1Since > 0 && Date.now() - origin.http1Since < ALPN_MEMORY_MS) return "http1";
        const live = origin.sessions.filter(usable);
        const roomy = live.find((s) => s.streams < streamLimit(s.session));
        if (roomy) return reserve(roomy);
        if (live.length >= MAX_SESSIONS_PER_ORIGIN) {
          // nghttp2 queues streams past the peer's limit until one ends.
          return reserve(live.reduce((a, b) => (b.streams < a.streams ? b : a)));
        }
        origin.dialing ??= dial(target, log).finally(() => (origin.dialing = undefined));
        const dialed = await origin.dialing;
        if (dialed === "http1") {
          origin.http1Since = Date.now();
          continue;
        }
        origin.http1Since = 0;
        if (!origin.sessions.includes(dialed)) {
          origin.sessions.push(dialed);
          dialed.session.once("close", () => {
            origin.sessions = origin.sessions.filter((s) => s !== dialed);
          });
        }
        if (closed) dialed.session.close();
        if (!usable(dialed) && ++failures >= MAX_CONNECT_ATTEMPTS) {
          throw Object.assign(new Error("the target closed every new HTTP/2 connection at once"), { code: "ERR_HTTP2_SESSION_CLOSED" });
        }
      }
    },

    async close() {
      closed = true;
      const all = [...origins.values()].flatMap((o) => o.sessions.map((s) => s.session));
      await Promise.all(
        all.map((session) => {
          if (session.destroyed) return;
          const done = new Promise((resolve) => session.once("close", resolve));
          // Exchanges were reset before this (their streams cancelled); a target that does not
          // finish the GOAWAY handshake does not hold the connector's exit.
          const force = setTimeout(() => session.destroy(), 2_000).unref();
          session.close();
          return done.finally(() => clearTimeout(force));
        }),
      );
    },
  };
}

function usable(s: PooledSession): boolean {
  return !s.goingAway && !s.session.closed && !s.session.destroyed;
}

function streamLimit(session: ClientHttp2Session): number {
  return session.remoteSettings.maxConcurrentStreams ?? 100;
}

/** Connects to the target and resolves once the HTTP/2 session is up, or with "http1" if ALPN chose it. */
async function dial(target: TargetSpec, log: Logger): Promise<PooledSession | "http1"> {
  const options = { settings: SETTINGS, maxSessionMemory: MAX_SESSION_MEMORY_MB };
  let session: ClientHttp2Session;
  if (target.transport === "tls") {
    const socket = await tlsHandshake(target.origin);
    if (socket.alpnProtocol !== "h2") {
      // The probe connection is dropped: the HTTP/1.1 path keeps its own pool of connections.
      socket.destroy();
      log.debug({ origin: target.origin, alpn: socket.alpnProtocol }, "target chose HTTP/1.1 by ALPN");
      return "http1";
    }
    session = http2Connect(target.origin, { ...options, createConnection: () => socket });
  } else {
    // Small frames (heads, WINDOW_UPDATEs) must leave at once: Nagle plus delayed ACKs costs ~40 ms a round trip.
    const socket = netConnect({ ...hostPort(new URL(target.origin)), noDelay: true });
    session = http2Connect(target.origin, { ...options, createConnection: () => socket });
  }
  // Before anything can fail: a session error with no listener would crash the connector.
  session.on("error", (err) => log.debug({ origin: target.origin, err: err.message }, "target HTTP/2 session failed"));
  await connected(session, target.origin);
  session.setLocalWindowSize(CONNECTION_WINDOW);
  const pooled: PooledSession = { session, streams: 0, goingAway: false, idleTimer: undefined };
  session.once("goaway", () => (pooled.goingAway = true));
  keepAlive(session);
  session.once("close", () => clearTimeout(pooled.idleTimer));
  // A target that accepts and never gets a request (all callers gave up meanwhile) is not kept forever.
  pooled.idleTimer = setTimeout(() => session.close(), IDLE_TIMEOUT_MS).unref();
  log.debug({ origin: target.origin }, "target HTTP/2 session connected");
  return pooled;
}

/**
 * Resolves once the target's first SETTINGS arrived (its preface, right after
 * the connection): only then is its concurrent-stream limit known.
 */
function connected(session: ClientHttp2Session, origin: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      const err = Object.assign(new Error(`no connection to ${origin} within ${CONNECT_TIMEOUT_MS} ms`), { code: "ETIMEDOUT" });
      session.destroy(err);
    }, CONNECT_TIMEOUT_MS);
    const settle = (err?: Error) => {
      clearTimeout(timer);
      session.off("remoteSettings", onSettings);
      session.off("error", onError);
      session.off("close", onClose);
      if (err) reject(err);
      else resolve();
    };
    const onSettings = () => settle();
    const onError = (err: Error) => settle(err);
    const onClose = () => settle(Object.assign(new Error(`${origin} closed the connection`), { code: "ECONNRESET" }));
    session.once("remoteSettings", onSettings);
    session.once("error", onError);
    session.once("close", onClose);
  });
}

/** TLS with ALPN offering h2 and http/1.1: the target's choice decides the transport. */
function tlsHandshake(origin: string): Promise<TLSSocket> {
  const { host, port } = hostPort(new URL(origin));
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host,
      port,
      // SNI carries names only; for an IP the certificate is still checked against it.
      servername: isIP(host) ? undefined : host,
      ALPNProtocols: ["h2", "http/1.1"],
    });
    socket.setNoDelay(true);
    const timer = setTimeout(() => {
      socket.destroy(Object.assign(new Error(`no TLS connection to ${origin} within ${CONNECT_TIMEOUT_MS} ms`), { code: "ETIMEDOUT" }));
    }, CONNECT_TIMEOUT_MS);
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      socket.off("error", onError);
      resolve(socket);
    });
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(err);
    };
    socket.once("error", onError);
  });
}

/** PINGs the target; a session whose previous PING is still unanswered is destroyed (its streams fail). */
function keepAlive(session: ClientHttp2Session): void {
  let waiting = false;
  const timer = setInterval(() => {
    if (waiting) return session.destroy(Object.assign(new Error("the target stopped answering PINGs"), { code: "ETIMEDOUT" }));
    waiting = true;
    session.ping((err) => {
      if (!err) waiting = false;
    });
  }, PING_INTERVAL_MS).unref();
  session.once("close", () => clearInterval(timer));
}
