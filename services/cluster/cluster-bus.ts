import { FerryError } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import type { ExchangeBus } from "../bus/exchange-bus.js";
import type { PeerFaults } from "../limits/peer-faults.js";
import type { TunnelRegistry } from "../tunnel/tunnel-registry.js";
import { createEgress } from "./cluster-egress.js";
import { createIngress } from "./cluster-ingress.js";
import { failWhere } from "./cross-exchange.js";
import { serveDisconnectRequests } from "./disconnect-requests.js";
import { createFramePublisher } from "./frame-publisher.js";
import type { ClusterConnection } from "./nats-connection.js";
import type { TargetPresence } from "./open-retry.js";
import { watchPeers } from "./peer-liveness.js";

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
  isDraining(): boolean;
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
 * when it loses NATS itself.
 */
export function createClusterBus(deps: ClusterBusDeps): ClusterBus {
  const { nc } = deps.conn;
  const { nodeId, registry, isDraining } = deps;
  const fault = (reason: string, details?: Record<string, unknown>) => deps.faults.fault("cluster", reason, details);
  const publisher = createFramePublisher(nc);
  const egress = createEgress({ nc, nodeId, registry, publisher, fault, isDraining });
  const ingress = createIngress({ nc, nodeId, publisher, fault, servesHere: (tenant, target) => registry.serves(tenant, target), known: deps.known });
  const ends = [egress.exchanges, ingress.exchanges];
  const peers = watchPeers({ conn: deps.conn, nodeId, isDraining, fault, ends });
  const disconnects = serveDisconnectRequests({ nc, nodeId, disconnectHere: deps.disconnectHere, fault, log: deps.log });

  return {
    async open(tenant, target, exchangeId, deliver) {
      if (registry.serves(tenant, target)) {
        try {
          return await deps.local.open(tenant, target, exchangeId, deliver);
        } catch (err) {
          // Busy or draining here: another node may still have room.
          if (!(err instanceof FerryError && err.kind === "unavailable")) throw err;
        }
      }
      return ingress.open(tenant, target, exchangeId, deliver);
    },
    get crossNode() {
      return egress.exchanges.size + ingress.exchanges.size;
    },
    stopRoutes: () => egress.stopRoutes(),
    liveNodes: peers.liveNodes,
    close() {
      peers.close();
      egress.close();
      ingress.close();
      disconnects.unsubscribe();
      failWhere(ends, () => "relay node shut down");
    },
  };
}
