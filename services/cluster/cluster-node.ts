import { FerryError } from "../../core/errors.js";
import type { PeerFaults } from "../limits/peer-faults.js";
import type { Logger } from "../../core/logger.js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { DisconnectRequestSchema, DisconnectResponseSchema } from "../../gen/ferry/cluster/v1/cluster_pb.js";
import { type Directory, localDirectory, type NodeFacts, nodeOf, viewOfTunnel } from "../admin/directory.js";
import type { ExchangeBus } from "../bus/exchange-bus.js";
import type { KvStore } from "../state/kv-store.js";
import type { TunnelRegistry } from "../tunnel/tunnel-registry.js";
import type { ExchangeFeed } from "../traffic/exchange-feed.js";
import type { LiveTraffic } from "../traffic/live-traffic.js";
import { type AuditStream, openAuditStream } from "./audit-stream.js";
import { bridgeFeed, type FeedBridge } from "./feed-bridge.js";
import { type ClusterBus, type PeerListen, startClusterBus } from "./cluster-bus.js";
import { createJetStreamStore } from "./jetstream-store.js";
import { openKvMirror } from "./kv-mirror.js";
import { type ClusterConnection, connectCluster } from "./nats-connection.js";
import type { NatsOptions } from "./nats-options.js";
import { type Presence, startPresence } from "./presence.js";
import { controlSubject, NODE_ID_PATTERN, STATE_BUCKET } from "./subjects.js";

/** The parts of a relay node that change when it joins a cluster. */
export interface ClusterMembership {
  /** Tenants, keys and tokens, shared by every node. */
  store: KvStore;
  /** The cluster-wide audit trail. */
  audit: AuditStream;
  /** Connected to NATS right now (a node cut off from NATS is not ready). */
  readonly connected: boolean;
  /**
   * Relay nodes taking clients now, this one included: at least 1, and 1 until `start` (peers are known from
   * their heartbeats, see peer-liveness.ts). Synchronous and cheap: the rate limits divide by it on every request.
   * A plain function, safe to pass on unbound.
   */
  liveNodes: () => number;
  /** Starts routing and presence once the node's registry and local bus exist. */
  start(deps: {
    registry: TunnelRegistry;
    local: ExchangeBus;
    node: () => NodeFacts;
    isDraining(): boolean;
    faults: PeerFaults;
    /** This node's live traffic, shared with the other nodes' watchers. */
    traffic: { feed: ExchangeFeed; live: LiveTraffic };
  }): Promise<{
    bus: ClusterBus;
    directory: Directory;
  }>;
  /** Drain: take no more exchanges from other nodes, tell the others. */
  drain(): void;
  /** Leaves the cluster: removes this node's presence, closes NATS. */
  close(): Promise<void>;
}

/**
 * Joins the cluster: connects to NATS (waiting for it when it is not up yet),
 * loads the shared state bucket. Resolves once the node can serve.
 */
export async function joinCluster(opts: {
  nats: NatsOptions;
  nodeId: string;
  log: Logger;
  auditRetentionDays: number;
  signal: AbortSignal;
  peerListen?: PeerListen;
}): Promise<ClusterMembership> {
  const { nodeId, log, signal } = opts;
  if (!NODE_ID_PATTERN.test(nodeId)) {
    throw new FerryError("invalid_argument", "invalid_node_id", `node id "${nodeId}" may use only letters, digits, '_' and '-' (at most 64) in a cluster`);
  }
  const conn: ClusterConnection = await connectCluster(opts.nats, nodeId, log, signal);
  // Three copies when there are three servers to hold them: those we were given, or those NATS tells us of.
  const servers = Math.max(opts.nats.servers.length, conn.nc.info?.connect_urls?.length ?? 1);
  const replicas = opts.nats.replicas ?? (servers >= 3 ? 3 : 1);
  const opened = await Promise.all([
    openKvMirror(conn.nc, STATE_BUCKET, { history: 5, replicas }, log, signal, 1_000),
    openAuditStream({ nc: conn.nc, nodeId, replicas, retentionDays: opts.auditRetentionDays, log, signal }),
  ]).catch(async (err: unknown) => {
    await conn.close();
    throw err;
  });
  const [stateMirror, audit] = opened;
  const store = createJetStreamStore(stateMirror);
  let presence: Presence | undefined;
  let bus: ClusterBus | undefined;
  let feedBridge: FeedBridge | undefined;
  conn.onReconnect(() => stateMirror.resync());
  log.info({ replicas, bucket: STATE_BUCKET }, "joined the cluster");

  return {
    store,
    audit,
    get connected() {
      return conn.connected;
    },
    liveNodes: () => bus?.liveNodes() ?? 1,
    async start(deps) {
      const self = () => nodeOf(deps.node(), deps.registry.tunnels().length);
      presence = await startPresence({ nc: conn.nc, nodeId, registry: deps.registry, replicas, self, isDraining: deps.isDraining, onReconnect: conn.onReconnect, log, signal });
      const p = presence;
      feedBridge = bridgeFeed({ nc: conn.nc, nodeId, ...deps.traffic, fault: (reason, details) => deps.faults.fault("cluster", reason, details) });
      const here = localDirectory(deps.registry, deps.node);
      bus = await startClusterBus({
        ...(opts.peerListen ? { peerListen: opts.peerListen } : {}),
        conn,
        nodeId,
        registry: deps.registry,
        local: deps.local,
        disconnectHere: here.disconnect,
        log,
        faults: deps.faults,
        isDraining: deps.isDraining,
        holders(tenant, target) {
          const nodes = new Set<string>();
          for (const t of p.remoteTunnels(tenant)) if (!t.draining && !t.paused && t.targets.includes(target)) nodes.add(t.nodeId);
          return [...nodes];
        },
        known(tenant, target) {
          let serving = deps.registry.serves(tenant, target);
          let tenantOnline = deps.registry.tunnels(tenant).length > 0;
          // Paused: every tunnel of the target that could take exchanges is paused (none is on its way elsewhere).
          let pausedOnly = false;
          let active = false;
          for (const t of [...deps.registry.tunnels(tenant).map(viewOfTunnel), ...p.remoteTunnels(tenant, true)]) {
            tenantOnline = true;
            if (!t.targets.includes(target)) continue;
            serving = true;
            if (t.paused && !t.draining) pausedOnly = true;
            else active = true;
          }
          return { serving, tenantOnline, paused: pausedOnly && !active };
        },
      });
      const directory: Directory = {
        nodes: () => p.nodes(),
        tunnels: (tenant) => [...here.tunnels(tenant), ...p.remoteTunnels(tenant)],
        async disconnect(tenant, connectorId, reason) {
          let closed = await here.disconnect(tenant, connectorId, reason);
          const remote = new Set(p.remoteTunnels(tenant).filter((t) => t.connectorId === connectorId).map((t) => t.nodeId));
          const request = toBinary(DisconnectRequestSchema, create(DisconnectRequestSchema, { tenant, connectorId, reason }));
          const answers = await Promise.allSettled(
            [...remote].map((node) => conn.nc.request(controlSubject(node), request, { timeout: 2_000 })),
          );
          for (const a of answers) {
            if (a.status === "rejected") {
              log.warn({ err: String(a.reason) }, "a node did not answer a disconnect request");
              continue;
            }
            try {
              closed += fromBinary(DisconnectResponseSchema, a.value.data).tunnels;
            } catch {
              deps.faults.fault("cluster", "malformed disconnect response");
            }
          }
          return closed;
        },
      };
      return { bus, directory };
    },
    drain() {
      bus?.stopRoutes();
      presence?.publishNode();
    },
    async close() {
      await presence?.leave();
      presence?.close();
      feedBridge?.close();
      bus?.close();
      await store.close();
      audit.flush();
      await conn.close();
    },
  };
}
