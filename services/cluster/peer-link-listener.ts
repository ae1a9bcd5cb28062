import { createServer, type Socket } from "node:net";
import { FerryError } from "../../core/errors.js";
import { MAX_MESSAGE_BYTES } from "../../core/exchange/protocol.js";
import type { Logger } from "../../core/logger.js";
import { sourceKey } from "../auth/source-key.js";
import { createMessageReader } from "../http/message-reader.js";
import { PeerLinkVerdict } from "../../gen/ferry/cluster/v1/cluster_pb.js";
import { readLinkHello } from "./cluster-messages.js";
import { encodeLinkWelcome } from "./link-codec.js";
import type { ClusterFault } from "./nats-callback.js";
import type { FramesKind } from "./subjects.js";

/** Connections at once: two per peer (256 peers) is what the cluster needs, plus those still saying hello. */
const MAX_CONNECTIONS = 512 + 64;
/**
 * Connections that have not said an accepted hello yet, in all and from one address: whoever reaches the port
 * cannot crowd the real peers out by connecting and keeping quiet (a node dials each peer twice at once).
 */
const MAX_UNAUTHENTICATED = 64;
const MAX_UNAUTHENTICATED_PER_ADDRESS = 4;
/** A connection that has not sent an accepted hello by then is closed (a peer sends it with its connect). */
const HELLO_TIMEOUT_MS = 3_000;
/** A hello is a node id, a token and a kind: anything longer is not one. */
const MAX_HELLO_BYTES = 1024;

/** Adds `delta` to a key's count; a count of 0 leaves the map. */
function count(counts: Map<string, number>, key: string, delta: number): void {
  const n = (counts.get(key) ?? 0) + delta;
  if (n > 0) counts.set(key, n);
  else counts.delete(key);
}

/** One accepted link: what it carries, from whom. */
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
  /** One FramesRequest message of an accepted link. Must not throw. */
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
 * Takes peer links (cluster.proto, PeerLinkHello) on --peer-listen: plain TCP
 * from the other relay nodes only, each connection authenticated by the
 * sender's node id and token before a byte of its frames is read, its messages
 * handed on as they are reassembled.
 */
export async function startPeerListener(deps: PeerListenerDeps): Promise<PeerListener> {
  let closing = false;
  /** Accepted links by "node/kind", while they are open. */
  const live = new Map<string, number>();
  const open = new Set<Socket>();

  /** Connections still to say an accepted hello, by source (an IPv4 address, an IPv6 /64, as client limits count). */
  const unauthenticated = new Map<string, number>();
  let unauthenticatedTotal = 0;

  const serve = (socket: Socket) => {
    const source = sourceKey(socket.remoteAddress ?? "");
    if (unauthenticatedTotal >= MAX_UNAUTHENTICATED || (unauthenticated.get(source) ?? 0) >= MAX_UNAUTHENTICATED_PER_ADDRESS) {
      deps.fault("too many peer link connections without a hello");
      socket.destroy();
      return;
    }
    unauthenticatedTotal++;
    count(unauthenticated, source, 1);
    let waiting = true;
    /** No longer waiting for its hello: accepted, refused or gone. */
    const settled = () => {
      if (!waiting) return;
      waiting = false;
      unauthenticatedTotal--;
      count(unauthenticated, source, -1);
    };
    open.add(socket);
    // Small frames (heads, window updates) must leave at once: Nagle plus delayed ACKs costs ~40 ms a round trip.
    socket.setNoDelay(true);
    let link: InboundLink | undefined;
    const timer = setTimeout(() => socket.destroy(), HELLO_TIMEOUT_MS);
    timer.unref();

    const refuse = (verdict: PeerLinkVerdict, reason: string, counted = true) => {
      if (counted) deps.fault(reason);
      reader.stop();
      // Nothing else may come on a connection that asked wrong: the answer, then the end.
      socket.end(encodeLinkWelcome(verdict, reason));
      socket.destroySoon();
    };

    const hello = (message: Buffer) => {
      const h = readLinkHello(message);
      if (!h.ok) return refuse(PeerLinkVerdict.REFUSED, h.reason);
      const verdict = deps.verify(h.value.node, h.value.token);
      if (verdict === "unknown") return refuse(PeerLinkVerdict.UNKNOWN_NODE, "no heartbeat of that node yet", false);
      if (verdict === "bad") return refuse(PeerLinkVerdict.REFUSED, "peer link with a bad token");
      clearTimeout(timer);
      settled();
      link = { node: h.value.node, kind: h.value.kind };
      const key = `${link.node}/${link.kind}`;
      count(live, key, 1);
      socket.once("close", () => count(live, key, -1));
      reader.setLimit(MAX_MESSAGE_BYTES);
      socket.write(encodeLinkWelcome(PeerLinkVerdict.ACCEPTED, ""));
    };

    const reader = createMessageReader({
      maxBytes: MAX_HELLO_BYTES,
      onMessage(message) {
        // From inside the socket's data event: a throw here would take the whole process down.
        try {
          if (!link) hello(message);
          else deps.receive(link, message);
        } catch (e) {
          deps.fault("peer link message handler threw", { err: String(e) });
          reader.stop();
          socket.destroy();
        }
      },
      onProblem(p) {
        // A fixed reason (a metric label): the sizes go in the details.
        const reason = p.kind === "compressed" ? "peer link message not in its framing" : "peer link message too large";
        if (!link) return refuse(PeerLinkVerdict.REFUSED, reason);
        deps.fault(reason, p.kind === "too_large" ? { bytes: p.length, limit: p.limit } : undefined);
        socket.destroy();
      },
    });
    socket.on("data", (chunk: Buffer) => reader.push(chunk));
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      settled();
      open.delete(socket);
      reader.stop();
      try {
        if (link && !closing) deps.lost(link);
      } catch (e) {
        deps.fault("peer link end handler threw", { err: String(e) });
      }
    });
  };

  const server = createServer(serve);
  server.maxConnections = MAX_CONNECTIONS;
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
  const port = (server.address() as { port: number }).port;
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
