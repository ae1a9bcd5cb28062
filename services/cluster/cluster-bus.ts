import { randomBytes } from "node:crypto";
import { FerryError } from "../../core/errors.js";
import { joinHostPort } from "../../core/host-port.js";
import { secretMatches, sha256 } from "../auth/secrets.js";
import type { Logger } from "../../core/logger.js";
import type { ExchangeBus } from "../bus/exchange-bus.js";
import type { PeerFaults } from "../limits/peer-faults.js";
import type { TunnelRegistry } from "../tunnel/tunnel-registry.js";
import { createEgress } from "./cluster-egress.js";
import { createIngress } from "./cluster-ingress.js";
import { type CrossExchange, deliverBatch, failWhere } from "./cross-exchange.js";
import { serveDisconnectRequests } from "./disconnect-requests.js";
import { createFramePublisher } from "./frame-publisher.js";
import type { ClusterConnection } from "./nats-connection.js";
import type { TargetPresence } from "./open-retry.js";
import { watchPeers } from "./peer-liveness.js";
import { type PeerListener, startPeerListener } from "./peer-link-listener.js";
import { isFrameBatch, readLinkMessage } from "./cluster-messages.js";
import { createPeerLinks } from "./peer-links.js";

export interface ClusterBusDeps {
  conn: ClusterConnection;
  nodeId: string;
  registry: TunnelRegistry;
  /** This node's own tunnels, used first: no NATS hop when the connector is here. */
  local: ExchangeBus;
  /** Closes a connector's tunnels on this node (asked by another node's admin API). */
  disconnectHere(tenant: string, connectorId: string, reason: string): Promise<number>;
  log: Logger;
  /** Counts what other nodes (or anyone on NATS) sent that could not be used. */
  faults: PeerFaults;
  /** Whether some node holds a tunnel of the tenant serving the target (from presence), and whether the tenant has any. */
  known(tenant: string, target: string): TargetPresence;
  /** Other nodes whose tunnels serve the target now (presence; not draining or paused): where an open over a link may go. */
  holders(tenant: string, target: string): string[];
  isDraining(): boolean;
  /** --peer-listen: take frames from the other nodes straight over HTTP/2. */
  peerListen?: PeerListen;
}

/** Where a node takes peer links (`listen`), and how the other nodes reach it (`advertise`; its port: the one listened on). */
export interface PeerListen {
  listen: { host: string; port: number };
  advertise: { host: string; port?: number };
}

export interface ClusterBus extends ExchangeBus {
  /** Exchanges this node carries across NATS right now (either end). */
  readonly crossNode: number;
  /** Stops taking exchanges from other nodes (drain: this node's connectors are moving away). */
  stopRoutes(): void;
  /** Relay nodes taking clients now, this one included (peer-liveness.ts); at least 1. */
  liveNodes(): number;
  close(): void;
}

/**
 * The bus between relay nodes over core NATS. A new exchange for a connector
 * held elsewhere is a NATS request on ferry.route.<tenant>.<target>, which the
 * nodes holding such a tunnel subscribe in one queue group (so they share the
 * load and "no responders" means no connector: 503 at once). After that the
 * frames of the exchange flow as ferry.frames.<node> messages, with the same
 * per-exchange credits as on one node: the egress node is a pipe between NATS
 * and the tunnel, and flow control runs between the ingress node and the
 * connector. NATS is at-most-once, so every node sends a heartbeat each second
 * and fails (never replays) what it shares with a peer that falls silent or
 * when it loses NATS itself. With peer links (--peer-listen) the frames go
 * node to node over TCP instead (peer-links.ts); NATS still finds the node
 * and carries the heartbeats.
 */
export async function startClusterBus(deps: ClusterBusDeps): Promise<ClusterBus> {
  const { nc } = deps.conn;
  const { nodeId, registry, isDraining, log } = deps;
  const fault = (reason: string, details?: Record<string, unknown>) => deps.faults.fault("cluster", reason, details);
  const publisher = createFramePublisher(nc);
  // The token this node presents on the links it opens; only its digest crosses NATS, in our heartbeat.
  const token = randomBytes(32).toString("base64url");
  const link = { address: "", tokenDigest: sha256(token) };
  const failOn = (pick: (ex: CrossExchange) => boolean, reason: string) => failWhere(ends, (ex) => (pick(ex) ? reason : undefined));
  const links = createPeerLinks({
    nodeId,
    token,
    log,
    fault,
    onDown: (l, why) => failOn((ex) => ex.linkOut === l, `the link to relay node ${l.node} broke (${why})`),
  });
  const egress = createEgress({ nc, nodeId, registry, publisher, links, fault, isDraining });
  const ingress = createIngress({
    nc,
    nodeId,
    publisher,
    links,
    fault,
    servesHere: (tenant, target) => registry.serves(tenant, target),
    known: deps.known,
    holders: deps.holders,
    answersOverLink: (node) => listener?.linkedFrom(node, "res") ?? false,
  });
  const ends = [egress.exchanges, ingress.exchanges];
  let listener: PeerListener | undefined;
  listener = deps.peerListen
    ? await startPeerListener({
        listen: deps.peerListen.listen,
        verify(node, presented) {
          const digest = peers.tokenDigest(node);
          if (digest === undefined) return "unknown";
          return secretMatches(presented, digest) ? "ok" : "bad";
        },
        receive(from, message) {
          if (isFrameBatch(message)) return deliverBatch(message, from.kind === "req" ? egress.exchanges : ingress.exchanges, fault, from);
          const m = readLinkMessage(message);
          if (!m.ok) return fault(m.reason);
          if (m.value.open && from.kind === "req") egress.takeFromLink(m.value.open, from.node);
          else if (m.value.openResult && from.kind === "res") ingress.answered(m.value.openResult, from.node);
          else fault("peer link message out of place");
        },
        lost: (from) => failOn((ex) => ex.linkIn === from, `the link from relay node ${from.node} broke`),
        fault,
        log,
      })
    : undefined;
  if (listener && deps.peerListen) {
    const { host, port } = deps.peerListen.advertise;
    link.address = joinHostPort(host, port ?? listener.port);
  }
  const peers = watchPeers({
    conn: deps.conn,
    nodeId,
    isDraining,
    fault,
    ends,
    link,
    onBeat: (beat) => links.announce(beat.node, beat.linkAddress),
    onSilent: (node) => links.forget(node),
  });
  const disconnects = serveDisconnectRequests({ nc, nodeId, disconnectHere: deps.disconnectHere, fault, log });

  return {
    async open(tenant, target, head, deliver) {
      if (registry.serves(tenant, target)) {
        try {
          return await deps.local.open(tenant, target, head, deliver);
        } catch (err) {
          // Busy or draining here: another node may still have room.
          if (!(err instanceof FerryError && err.kind === "unavailable")) throw err;
        }
      }
      return ingress.open(tenant, target, head, deliver);
    },
    get crossNode() {
      return egress.exchanges.size + ingress.exchanges.size;
    },
    stopRoutes: () => egress.stopRoutes(),
    liveNodes: peers.liveNodes,
    close() {
      peers.close();
      links.close();
      void listener?.close();
      egress.close();
      ingress.close();
      disconnects.unsubscribe();
      failWhere(ends, () => "relay node shut down");
    },
  };
}
