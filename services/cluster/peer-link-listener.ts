import { createServer, type Http2ServerRequest, type Http2Session, type Http2ServerResponse, type ServerHttp2Session } from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { FerryError } from "../../core/errors.js";
import { MAX_MESSAGE_BYTES } from "../../core/exchange/protocol.js";
import type { Logger } from "../../core/logger.js";
import { GrpcStatus } from "../http/grpc-status.js";
import { GrpcCall } from "../tunnel/grpc-call.js";
import { widenTunnelSession } from "../tunnel/tunnel-windows.js";
import type { ClusterFault } from "./nats-callback.js";
import { type FramesKind, PEER_LINK_PATH } from "./peer-links.js";
import { NODE_ID_PATTERN } from "./subjects.js";

/** Connections at once: two per peer is what the cluster needs; more is someone else. */
const MAX_CONNECTIONS = 256;
/** A connection that has not opened an accepted link by then is closed. */
const AUTH_TIMEOUT_MS = 10_000;
/** Streams per connection: a link is two. */
const MAX_STREAMS = 4;

/** One accepted stream: what it carries, from whom. */
export interface InboundLink {
  readonly node: string;
  readonly kind: FramesKind;
}

export interface PeerListenerDeps {
  listen: { host: string; port: number };
  /**
   * Whether `token` is the one `node` announces (the digest in its heartbeat), in constant time; "unknown":
   * no heartbeat of that node yet (a node that just started dials those it heard before they heard it).
   */
  verify(node: string, token: string): "ok" | "unknown" | "bad";
  /** One FrameBatch message of an accepted link. Must not throw. */
  receive(link: InboundLink, message: Uint8Array): void;
  /** The link ended before this node closed it: what it carried may be cut short. */
  lost(link: InboundLink): void;
  fault: ClusterFault;
  log: Logger;
}

export interface PeerListener {
  readonly port: number;
  /** Whether `node` has a link of kind `kind` to us up now. */
  linkedFrom(node: string, kind: FramesKind): boolean;
  close(): Promise<void>;
}

/**
 * Serves PeerLinkService/Frames (cluster.proto) on --peer-listen: cleartext
 * HTTP/2 from the other relay nodes only, each stream authenticated by the
 * sender's node id and token before a byte of it is read, its messages handed
 * on as they are reassembled.
 */
export async function startPeerListener(deps: PeerListenerDeps): Promise<PeerListener> {
  let closing = false;
  const server = createServer({ settings: { maxConcurrentStreams: MAX_STREAMS, enablePush: false }, maxSessionMemory: 64 });
  server.maxConnections = MAX_CONNECTIONS;
  // Links are long-lived and quiet between exchanges: no idle timeout (a dead peer is found by its heartbeats).
  server.setTimeout(0);
  // Small frames (heads, window updates) must leave at once: Nagle plus delayed ACKs costs ~40 ms a round trip.
  server.on("connection", (socket: Socket) => socket.setNoDelay(true));
  const accepted = new WeakSet<Http2Session>();
  /** Accepted streams by "node/kind", while they are open. */
  const live = new Map<string, number>();
  const open = new Set<ServerHttp2Session>();
  server.on("session", (session) => {
    open.add(session);
    const timer = setTimeout(() => {
      if (!accepted.has(session)) session.destroy();
    }, AUTH_TIMEOUT_MS);
    timer.unref();
    session.on("close", () => {
      clearTimeout(timer);
      open.delete(session);
    });
    session.on("error", () => {});
  });
  server.on("request", (req: Http2ServerRequest, res: Http2ServerResponse) => {
    const call = new GrpcCall(req, res, MAX_MESSAGE_BYTES);
    const refuse = (status: number, reason: string, counted = true) => {
      if (counted) deps.fault(reason);
      call.finish(status, reason);
      // Nothing else may come on a connection that asked wrong.
      req.stream.session?.close();
    };
    const node = req.headers["ferry-node"];
    const kind = req.headers["ferry-frames"];
    const auth = req.headers.authorization;
    if (req.method !== "POST" || req.url !== PEER_LINK_PATH) return refuse(GrpcStatus.UNIMPLEMENTED, "not a peer link request");
    if (typeof node !== "string" || !NODE_ID_PATTERN.test(node) || (kind !== "req" && kind !== "res")) return refuse(GrpcStatus.INVALID_ARGUMENT, "peer link with a bad node or kind");
    const verdict = typeof auth === "string" && auth.startsWith("Bearer ") ? deps.verify(node, auth.slice(7)) : "bad";
    if (verdict === "unknown") return refuse(GrpcStatus.UNAVAILABLE, "no heartbeat of that node yet", false);
    if (verdict === "bad") return refuse(GrpcStatus.UNAUTHENTICATED, "peer link with a bad token");
    const session = req.stream.session;
    if (session) {
      accepted.add(session);
      // Authenticated: the same wide windows as a connector's tunnel (each exchange still has its own credit).
      widenTunnelSession(session);
    }
    const link: InboundLink = { node, kind };
    const linkKey = `${node}/${kind}`;
    live.set(linkKey, (live.get(linkKey) ?? 0) + 1);
    res.once("close", () => {
      const n = (live.get(linkKey) ?? 1) - 1;
      if (n > 0) live.set(linkKey, n);
      else live.delete(linkKey);
    });
    call.accept();
    call.onMessage((message) => {
      // From inside the HTTP/2 session's data event: a throw here would take the whole process down.
      try {
        deps.receive(link, message);
      } catch (e) {
        deps.fault("peer link message handler threw", { err: String(e) });
      }
    });
    call.onClose(() => {
      if (!closing) deps.lost(link);
    });
  });
  server.on("error", (err) => deps.log.warn({ err: String(err) }, "peer listener error"));
  await new Promise<void>((resolve, reject) => {
    const failed = (err: NodeJS.ErrnoException) =>
      reject(new FerryError("unavailable", "peer_listen_failed", `cannot listen on --peer-listen ${deps.listen.host}:${deps.listen.port}: ${err.code ?? err.message}`));
    server.once("error", failed);
    server.listen(deps.listen.port, deps.listen.host, () => {
      server.off("error", failed);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  deps.log.info({ host: deps.listen.host, port }, "peer listener up");
  return {
    port,
    linkedFrom: (node, kind) => live.has(`${node}/${kind}`),
    close: () =>
      new Promise<void>((resolve) => {
        closing = true;
        server.close(() => resolve());
        // Links are never idle for long: close them rather than wait for the peers to.
        for (const s of open) s.destroy();
      }),
  };
}
