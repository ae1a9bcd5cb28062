import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { NatsConnection } from "nats";
import { type Node, NodeSchema } from "../../gen/ferry/admin/v1/admin_service_pb.js";
import { type TunnelPresence, TunnelPresenceSchema } from "../../gen/ferry/cluster/v1/cluster_pb.js";
import type { Logger } from "../../clients/sdk/logger.js";
import { type TunnelView, viewOfTunnel } from "../admin/directory.js";
import type { RelayTunnel } from "../tunnel/relay-tunnel.js";
import type { TunnelRegistry } from "../tunnel/tunnel-registry.js";
import { type KvMirror, openKvMirror } from "./kv-mirror.js";
import { NODES_BUCKET, TUNNELS_BUCKET } from "./subjects.js";

/** A node that has not refreshed its entry for this long is gone (bucket TTL). */
const NODE_TTL_MS = 15_000;
const NODE_REFRESH_MS = 5_000;
/** Tunnel entries are written on connect and removed on disconnect; the refresh only keeps in-flight and RTT roughly current. */
const TUNNEL_TTL_MS = 120_000;
const TUNNEL_REFRESH_MS = 40_000;

export interface Presence {
  /** Every live node, this one included. */
  nodes(): Node[];
  /**
   * Live tunnels as the presence bucket lists them (a dead node's entries are ignored at once, before their TTL
   * removes them); with `includeSelf` also this node's entries, which outlive its tunnels while it drains.
   */
  remoteTunnels(tenant?: string, includeSelf?: boolean): TunnelView[];
  /** Writes this node's entry now (draining, address changed...). */
  publishNode(): void;
  /** Removes this node and its tunnels (graceful stop). */
  leave(): Promise<void>;
  close(): void;
}

/**
 * Which nodes and tunnels exist in the cluster: two KV buckets with a TTL that
 * every node writes its own entries to and mirrors in memory, so the admin API
 * on any node lists every node and connector, and the ingress can tell a
 * connector that is moving (wait a moment) from none at all (503 at once).
 */
export async function startPresence(deps: {
  nc: NatsConnection;
  nodeId: string;
  registry: TunnelRegistry;
  replicas: number;
  self(): Node;
  isDraining(): boolean;
  onReconnect(listener: () => void): void;
  log: Logger;
  signal: AbortSignal;
}): Promise<Presence> {
  const { nodeId, log } = deps;
  const nodes: KvMirror = await openKvMirror(deps.nc, NODES_BUCKET, { ttl: NODE_TTL_MS, history: 1, replicas: deps.replicas }, log, deps.signal);
  const tunnels: KvMirror = await openKvMirror(deps.nc, TUNNELS_BUCKET, { ttl: TUNNEL_TTL_MS, history: 1, replicas: deps.replicas }, log, deps.signal);
  const written = new Map<string, RelayTunnel>();
  const tunnelWasDraining = new Set<string>();
  /** Whether each tunnel was paused when last written: a pause or resume is re-announced at once. */
  const tunnelWasPaused = new Map<string, boolean>();
  const decoded = new Map<string, { revision: number; view: TunnelView }>();

  const warn = (what: string) => (err: unknown) => log.warn({ err: String(err) }, `presence: cannot ${what}`);
  const publishNode = () => {
    nodes.kv.put(nodeId, toBinary(NodeSchema, deps.self())).catch(warn("publish this node"));
  };
  const putTunnel = (t: RelayTunnel) => {
    const v = viewOfTunnel(t);
    const entry = create(TunnelPresenceSchema, {
      ...v,
      targets: [...v.targets],
      connectTime: timestampFromDate(v.connectTime),
      leaveTime: v.leaveTime ? timestampFromDate(v.leaveTime) : undefined,
      rttMs: Math.round(v.rttMs ?? 0),
    });
    tunnels.kv.put(`${nodeId}.${v.tunnelId}`, toBinary(TunnelPresenceSchema, entry)).catch(warn("publish a tunnel"));
  };
  /** Puts new or changed tunnels, deletes gone ones. */
  const syncTunnels = (all: boolean) => {
    const live = new Map(deps.registry.tunnels().map((t) => [t.info.id, t]));
    for (const id of written.keys()) {
      // While this node drains, its departed tunnels stay listed (as draining) until it leaves: other nodes
      // then know the connector is moving and wait a moment for it instead of answering 503.
      if (live.has(id) || deps.isDraining()) continue;
      written.delete(id);
      tunnels.kv.delete(`${nodeId}.${id}`).catch(warn("remove a tunnel"));
    }
    for (const [id, t] of live) {
      const known = written.get(id);
      if (all || !known || (t.draining && !tunnelWasDraining.has(id)) || tunnelWasPaused.get(id) !== t.paused) {
        written.set(id, t);
        if (t.draining) tunnelWasDraining.add(id);
        tunnelWasPaused.set(id, t.paused);
        putTunnel(t);
      }
    }
    for (const id of tunnelWasDraining) if (!live.has(id)) tunnelWasDraining.delete(id);
    for (const id of tunnelWasPaused.keys()) if (!live.has(id)) tunnelWasPaused.delete(id);
  };

  deps.registry.onChange(() => syncTunnels(false));
  // After a reconnect: catch up on what others wrote meanwhile, and rewrite our own entries (puts may have failed).
  deps.onReconnect(() => {
    nodes.resync();
    tunnels.resync();
    publishNode();
    syncTunnels(true);
  });
  publishNode();
  syncTunnels(true);
  const nodeTimer = setInterval(publishNode, NODE_REFRESH_MS);
  const tunnelTimer = setInterval(() => syncTunnels(true), TUNNEL_REFRESH_MS);
  nodeTimer.unref();
  tunnelTimer.unref();

  const liveNodes = (): Map<string, Node> => {
    const now = Date.now();
    const out = new Map<string, Node>();
    for (const [key, e] of nodes.entries()) {
      if (now - e.created.getTime() > NODE_TTL_MS) continue;
      try {
        out.set(key, fromBinary(NodeSchema, e.value));
      } catch {
        // not ours to read
      }
    }
    return out;
  };

  return {
    nodes() {
      const out = liveNodes();
      out.set(nodeId, deps.self());
      return [...out.values()].sort((a, b) => (a.nodeId < b.nodeId ? -1 : 1));
    },
    remoteTunnels(tenant, includeSelf = false) {
      const alive = liveNodes();
      alive.set(nodeId, deps.self());
      const out: TunnelView[] = [];
      for (const [key, e] of tunnels.entries()) {
        const node = key.slice(0, key.indexOf("."));
        if ((node === nodeId && !includeSelf) || !alive.has(node)) continue;
        let hit = decoded.get(key);
        if (!hit || hit.revision !== e.revision) {
          try {
            hit = { revision: e.revision, view: viewOf(fromBinary(TunnelPresenceSchema, e.value)) };
          } catch {
            continue;
          }
          decoded.set(key, hit);
        }
        if (tenant === undefined || hit.view.tenant === tenant) out.push(hit.view);
      }
      for (const key of decoded.keys()) if (!tunnels.get(key)) decoded.delete(key);
      return out;
    },
    publishNode,
    async leave() {
      clearInterval(nodeTimer);
      clearInterval(tunnelTimer);
      await Promise.all([
        nodes.kv.delete(nodeId).catch(() => {}),
        ...[...written.keys()].map((id) => tunnels.kv.delete(`${nodeId}.${id}`).catch(() => {})),
      ]);
    },
    close() {
      clearInterval(nodeTimer);
      clearInterval(tunnelTimer);
      nodes.close();
      tunnels.close();
    },
  };
}

function viewOf(p: TunnelPresence): TunnelView {
  return {
    ...p,
    connectTime: p.connectTime ? timestampDate(p.connectTime) : new Date(0),
    leaveTime: p.leaveTime ? timestampDate(p.leaveTime) : undefined,
    rttMs: p.rttMs || undefined,
  };
}
