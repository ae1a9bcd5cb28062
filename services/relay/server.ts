import type { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer as createHttp1Server, type IncomingMessage, type Server as Http1Server } from "node:http";
import {
  createServer as createHttp2Server,
  createSecureServer,
  type Http2Server,
  type Http2SecureServer,
  type Http2Session,
  type Settings,
} from "node:http2";
import { createServer as createNetServer, type AddressInfo, Server as NetServerClass, type Server as NetServer, type Socket } from "node:net";
import type { BlockList } from "node:net";
import type { Duplex } from "node:stream";
import { joinHostPort } from "../../core/host-port.js";
import { createLogger } from "../../core/logger.js";
import { createPeerFaults, type PeerFaults } from "../limits/peer-faults.js";
import { type Limits, withLimits } from "../limits/limits.js";
import { TUNNEL_PATH } from "../../core/exchange/tunnel-codec.js";
import type { NodeRequest, NodeResponse } from "../http/http-error.js";
import { type CertReloader, watchCertFiles } from "./cert-reload.js";
import { capConnections } from "./connection-cap.js";
import { watchSessionTimeouts } from "./h2-session-timeouts.js";
import { http1Timeouts, startHeadersChecker } from "./http1-timeouts.js";
import { loadTlsMaterial, secureContextOptions } from "./tls-files.js";

export interface ListenOptions {
  host: string;
  port: number;
  /** PEM files; with them the port speaks TLS (HTTP/2 or HTTP/1.1 by ALPN). */
  tlsCert?: string;
  tlsKey?: string;
  /**
   * PEM CA file: with it the TLS server asks for a client certificate (without
   * requiring one) and the tunnel endpoint may authenticate connectors by it.
   */
  connectorCa?: string;
  /** Ask every client for a certificate (never required): access rules that accept mtls check it against the tenant's CA. */
  clientCertificates?: boolean;
  /** Called with the certificate chain in use: at start (reloaded false) and after each reload. */
  onCertificate?(chain: X509Certificate[], reloaded: boolean): void;
  /** A changed certificate or key that cannot be used; the old pair stays. */
  onCertificateError?(err: Error): void;
  /** How often the certificate files are read in case a file-system watch missed a change (default 60s). */
  certPollMs?: number;
  /** HTTP/2 PING interval; a session that does not answer within it is destroyed. */
  keepaliveMs: number;
  /** Connection limits and timeouts; unset ones take their defaults. */
  limits?: Partial<Limits>;
  /** Where refusals by a limit and bad peers are counted (shared with the relay's /metrics). */
  faults?: PeerFaults;
  /** --trust-proxy addresses: exempt from the per-address connection limit (they carry many clients). */
  trustedProxies?: BlockList;
}

export interface RelayServer {
  readonly url: string;
  readonly port: number;
  /** Stops accepting connections; open ones keep working. */
  stopAccepting(): void;
  /** Reads the certificate files now and switches to them if they changed and are valid; true when switched. */
  reloadCertificate(): boolean;
  /** Closes every connection: gracefully first, then forcibly after `forceAfterMs`. */
  close(forceAfterMs?: number): Promise<void>;
}

/** What the port serves: requests (HTTP/1.1 and HTTP/2), and HTTP/1.1 Upgrade requests with their sockets. */
export interface Listeners {
  request(req: NodeRequest, res: NodeResponse): void;
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
}

const NetServerClose = NetServerClass.prototype.close;

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/**
 * Serves one port for everything. With TLS, ALPN picks HTTP/2 or HTTP/1.1.
 * Cleartext Node ignores allowHTTP1, so the HTTP/2 connection preface is
 * sniffed and each socket handed to the HTTP/2 or the HTTP/1.1 server.
 */
export async function listen(handlers: Listeners, opts: ListenOptions): Promise<RelayServer> {
  const onRequest = handlers.request;
  const limits = withLimits(opts.limits);
  // Without the relay's shared counters (tests, embedders), its own, silent.
  const faults = opts.faults ?? createPeerFaults(createLogger({ level: "silent" }));
  const headersTimedOut = () => faults.limited("headersTimeout");
  // Every session starts with a client's windows (what an anonymous client may park in the relay); a connector's
  // session is widened once it has authenticated (widenTunnelSession, services/tunnel/tunnel-windows.ts).
  const h2Settings: Settings = { initialWindowSize: limits.clientStreamWindow, maxConcurrentStreams: limits.maxStreamsPerConnection, enablePush: false };
  const h1Options = http1Timeouts(limits);
  // HTTP/1.1 connections (cleartext or TLS) that have carried a request, with the requests in progress on each:
  // on close, idle ones go at once and busy ones right after their answer, so nothing in progress is cut.
  const h1Busy = new Map<Socket, number>();
  let closing = false;
  const handler = (req: NodeRequest, res: NodeResponse) => {
    if (!("stream" in req)) {
      const socket = req.socket;
      if (!h1Busy.has(socket)) socket.once("close", () => h1Busy.delete(socket));
      h1Busy.set(socket, (h1Busy.get(socket) ?? 0) + 1);
      res.once("close", () => {
        const n = (h1Busy.get(socket) ?? 1) - 1;
        h1Busy.set(socket, n);
        if (closing && n === 0) socket.end();
      });
    }
    onRequest(req, res);
  };
  const sessions = new Set<Http2Session>();
  /** Open tunnel streams per session: such a session is closed only once the relay has ended its tunnels. */
  const tunnelStreams = new Map<Http2Session, number>();
  const closeWhenNoTunnel = (session: Http2Session) => {
    if (!tunnelStreams.get(session)) session.close();
  };
  const trackSession = (session: Http2Session) => {
    sessions.add(session);
    session.on("stream", (stream, headers) => {
      if (headers[":path"] !== TUNNEL_PATH) return;
      tunnelStreams.set(session, (tunnelStreams.get(session) ?? 0) + 1);
      stream.once("close", () => {
        tunnelStreams.set(session, (tunnelStreams.get(session) ?? 1) - 1);
        if (closing) closeWhenNoTunnel(session);
      });
    });
    session.once("connect", () => session.setLocalWindowSize(limits.clientConnectionWindow));
    watchSessionTimeouts(session, limits, headersTimedOut);
    const timer = setInterval(() => pingOrDestroy(session, opts.keepaliveMs), opts.keepaliveMs);
    timer.unref();
    session.once("close", () => {
      clearInterval(timer);
      sessions.delete(session);
      tunnelStreams.delete(session);
    });
  };

  let outer: NetServer | Http2SecureServer;
  let h1: Http1Server | undefined;
  let h2: Http2Server | Http2SecureServer;
  /** Cleartext: where each socket goes once its first bytes tell its protocol. */
  let sniffing: Sniffing | undefined;
  let reloader: CertReloader | undefined;
  if (opts.tlsCert && opts.tlsKey) {
    const material = loadTlsMaterial(opts.tlsCert, opts.tlsKey);
    const clientCa = opts.connectorCa ? readFileSync(opts.connectorCa) : undefined;
    const secure = createSecureServer(
      {
        ...secureContextOptions(material, clientCa),
        // Asked, never required: key-only connectors and browsers must still get in. A certificate that does not
        // verify is not fatal either: the tunnel endpoint treats it as absent (socket.authorized is false).
        ...(clientCa || opts.clientCertificates ? { requestCert: true, rejectUnauthorized: false } : {}),
        allowHTTP1: true,
        settings: h2Settings,
        // Node's handshake timer is not reset by handshake bytes (only application data reaches it), so a
        // ClientHello trickled a byte at a time is cut at the deadline too.
        handshakeTimeout: limits.headersTimeoutMs,
      },
      handler,
    );
    // The secure server is its own HTTP/1.1 server (allowHTTP1) and runs Node's checker since it listens; its
    // defaults (60s heads, 5 minutes per request, no keep-alive timeout) are replaced by ours.
    Object.assign(secure, h1Options);
    secure.on("tlsClientError", (err: NodeJS.ErrnoException) => {
      if (err.code === "ERR_TLS_HANDSHAKE_TIMEOUT") headersTimedOut();
    });
    opts.onCertificate?.(material.chain, false);
    // New handshakes get the new pair; connections already open (tunnels included) keep theirs.
    reloader = watchCertFiles({
      certFile: opts.tlsCert,
      keyFile: opts.tlsKey,
      current: material,
      pollMs: opts.certPollMs,
      apply: (next) => {
        secure.setSecureContext(secureContextOptions(next, clientCa));
        opts.onCertificate?.(next.chain, true);
      },
      onError: (err) => opts.onCertificateError?.(err),
    });
    h2 = secure;
    outer = secure;
  } else {
    const h2c = createHttp2Server({ settings: h2Settings }, handler);
    h2 = h2c;
    h1 = createHttp1Server(h1Options, handler);
    startHeadersChecker(h1);
    sniffing = { h1, h2: h2c, timeoutMs: limits.headersTimeoutMs, timedOut: headersTimedOut };
    // keepAlive: TCP probes find half-open connections of clients that vanished.
    outer = createNetServer({ keepAlive: true });
  }
  h2.on("session", trackSession);
  // HTTP/1.1 Upgrade (WebSocket): Node lets go of the socket. It is no longer an HTTP connection to end when idle,
  // but it stays in `accepted`, so close() still waits for it (and forces it after the grace).
  // Without an upgrade listener, Node serves an Upgrade request as a plain one: where the relay ignores an upgrade.
  const plain = createHttp1Server(h1Options, handler);
  startHeadersChecker(plain);
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (!forwardsAsUpgrade(req)) return replayWithoutUpgrade(req, socket, head, plain);
    h1Busy.delete(req.socket);
    handlers.upgrade(req, socket, head);
  };
  (h1 ?? h2).on("upgrade", onUpgrade);
  // Every socket from accept to close, including those still in their handshake or being sniffed: close() waits for them all.
  const accepted = new Set<Socket>();
  const admit = capConnections(outer, { limits, faults, trustedProxies: opts.trustedProxies });
  // With TLS, Node has already wrapped the socket (its own 'connection' listener comes first), but not read from it.
  outer.on("connection", (socket: Socket) => {
    if (!admit(socket)) return;
    accepted.add(socket);
    socket.once("close", () => accepted.delete(socket));
    // Small frames (heads, credit) must leave at once: Nagle plus delayed ACKs costs ~40 ms a round trip.
    socket.setNoDelay(true);
    if (sniffing) sniff(socket, sniffing);
  });

  await new Promise<void>((resolve, reject) => {
    const failed = (err: Error) => {
      reloader?.close();
      h1?.close();
      plain.close();
      reject(err);
    };
    outer.once("error", failed);
    outer.listen(opts.port, opts.host, () => {
      outer.off("error", failed);
      resolve();
    });
  });
  // Only the listening socket: Http2SecureServer.close() would also close every session at once, tunnels included.
  const stopAccepting = () => {
    if (outer.listening) NetServerClose.call(outer);
  };
  const address = outer.address() as AddressInfo;
  const scheme = opts.tlsCert ? "https" : "http";

  return {
    url: `${scheme}://${joinHostPort(address.address, address.port)}`,
    port: address.port,
    stopAccepting,
    reloadCertificate: () => reloader?.check() ?? false,
    async close(forceAfterMs = 5_000) {
      closing = true;
      reloader?.close();
      stopAccepting();
      // GOAWAY to clients now; a connector's session only once its tunnels have ended (the relay's drain ends them,
      // after the relay's own GoAway has moved the connector): an HTTP/2 GOAWAY under a live tunnel helps nobody.
      for (const s of sessions) closeWhenNoTunnel(s);
      for (const [socket, inProgress] of h1Busy) if (inProgress === 0) socket.end();
      // A connection whose first request is still on its way gets its answer instead of a reset.
      const allClosed = new Promise<void>((resolve) => {
        const sweep = () => {
          h1?.closeIdleConnections();
          plain.closeIdleConnections();
          if (accepted.size === 0) resolve();
          else setTimeout(sweep, 50);
        };
        sweep();
      });
      const all = Promise.all([...[...sessions].map((s) => new Promise((r) => s.once("close", r))), allClosed]);
      const force = setTimeout(() => {
        h1?.closeAllConnections();
        plain.closeAllConnections();
        for (const s of sessions) s.destroy();
        for (const socket of accepted) socket.destroy();
      }, forceAfterMs);
      force.unref();
      await all;
      clearTimeout(force);
      // Stops Node's connection checkers (with TLS, the secure server is the HTTP/1.1 one); every connection is gone by now.
      for (const server of [h1 ?? outer, plain]) server.close();
    },
  };
}

interface Sniffing {
  h1: Http1Server;
  h2: Http2Server;
  /** headersTimeout: the preface (or the first byte of an HTTP/1.1 head) must come within it. */
  timeoutMs: number;
  timedOut(): void;
}

/**
 * Reads until the first bytes tell HTTP/2 (the connection preface) from
 * HTTP/1.x, then hands the socket over. The HTTP/2 server reads through the
 * stream, so the bytes are put back; for HTTP/1.1 see handOverHttp1.
 */
function sniff(socket: Socket, to: Sniffing): void {
  // A deadline, not an idle timer: a silent socket and one that trickles the preface go alike. From the hand-over on,
  // Node's header checker (HTTP/1.1) or watchSessionTimeouts (HTTP/2) keep the clock.
  const deadline = setTimeout(() => {
    to.timedOut();
    socket.destroy();
  }, to.timeoutMs);
  socket.once("close", () => clearTimeout(deadline));
  let seen = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    seen = Buffer.concat([seen, chunk]);
    const n = Math.min(seen.length, H2_PREFACE.length);
    const isH2 = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
    if (isH2 && seen.length < H2_PREFACE.length) return;
    socket.off("data", onData);
    socket.off("error", onError);
    clearTimeout(deadline);
    if (isH2) {
      socket.pause();
      socket.unshift(seen);
      to.h2.emit("connection", socket);
    } else {
      handOverHttp1(to.h1, socket, seen);
    }
  };
  const onError = () => socket.destroy();
  socket.on("data", onData);
  socket.on("error", onError);
}

/**
 * Gives a socket whose first bytes we already read to Node's HTTP/1 server.
 * Its parser reads the socket handle directly, so those bytes are replayed as
 * an event.
 *
 * Our read of the first bytes left Node's stream a read-ahead (maybeReadMore)
 * for the next tick. If the parser paused the socket in between (a first read
 * carrying more body than the request buffers), that read-ahead starts the
 * handle again under a socket that stays paused, and later pauses, being no
 * change, no longer stop it: the relay would take in a whole upload while the
 * exchange waits (measured: 170 MB of a 200 MB upload across nodes). The HTTP
 * parser stops the handle on 'pause', so a paused socket says it once more.
 */
function handOverHttp1(server: Http1Server, socket: Duplex, first: Buffer): void {
  server.emit("connection", socket);
  socket.emit("data", first);
  setImmediate(() => {
    if (!socket.destroyed && socket.isPaused()) socket.emit("pause");
  });
}

/**
 * Which Upgrade requests travel as upgrades. Not `h2c`: that asks to switch
 * this very connection to cleartext HTTP/2, which the relay offers by prior
 * knowledge and ALPN instead (curl --http2 sends it on http:// URLs). Not one
 * with a body either: a WebSocket handshake has none, and a body before the
 * switch would have to be parsed here, so such a request is served as a plain
 * one, which a server may always do (RFC 9110 §7.8).
 */
function forwardsAsUpgrade(req: IncomingMessage): boolean {
  const protocol = String(req.headers.upgrade ?? "").trim().toLowerCase();
  const body = req.headers["transfer-encoding"] !== undefined || (req.headers["content-length"] ?? "0") !== "0";
  return protocol !== "h2c" && !body;
}

/**
 * Serves an Upgrade request as a plain HTTP/1.1 one: rebuilt without its
 * upgrade fields and handed, with whatever followed it, to a server without an
 * upgrade listener. This runs inside Node's 'upgrade' event, before anything
 * else has read the socket, so nothing is lost.
 */
function replayWithoutUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, plain: Http1Server): void {
  const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!.toLowerCase();
    if (name !== "upgrade" && name !== "connection" && name !== "http2-settings") lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
  }
  handOverHttp1(plain, socket, Buffer.concat([Buffer.from(`${lines.join("\r\n")}\r\n\r\n`, "latin1"), head]));
}

function pingOrDestroy(session: Http2Session, timeoutMs: number): void {
  if (session.closed || session.destroyed) return;
  const timer = setTimeout(() => session.destroy(), timeoutMs);
  timer.unref();
  try {
    session.ping((err) => {
      clearTimeout(timer);
      if (err && !session.destroyed) session.destroy();
    });
  } catch {
    clearTimeout(timer);
  }
}
