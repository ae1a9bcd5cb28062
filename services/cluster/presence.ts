import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { type Timestamp, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { NatsConnection } from "nats";
import { type Node, NodeSchema } from "../../gen/ferry/admin/v1/admin_service_pb.js";
import { type TunnelPresence, TunnelPresenceSchema } from "../../gen/ferry/cluster/v1/cluster_pb.js";
import type { Logger } from "../../core/logger.js";
import { isDnsLabel } from "../../core/names.js";
import { type TunnelView, viewOfTunnel } from "../admin/directory.js";
import { timestampInRange } from "../../core/timestamp-range.js";
import type { RelayTunnel } from "../tunnel/relay-tunnel.js";
import type { TunnelRegistry } from "../tunnel/tunnel-registry.js";
import { type KvMirror, type MirrorEntry, openKvMirror } from "./kv-mirror.js";
import { NODE_ID_PATTERN, NODES_BUCKET, TUNNELS_BUCKET } from "./subjects.js";

/** Certificate warnings a node record may carry (the checks in core/cert-check.ts find fewer). */
const MAX_CERT_WARNINGS = 16;
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
 *
 * Nothing here throws: what it writes comes from connectors (checked at the
 * tunnel endpoint, and written defensively anyway), and what it reads was
 * written by any process on the NATS account, so every record is checked
 * before the admin API or the router sees it, and a bad one is skipped.
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
  /** Each tunnel's status (paused, leave time) when last written: a change of it is re-announced at once. */
  const tunnelWasStatus = new Map<string, string>();
  const nodeRecords = decodedRecords(nodes, (key, e) => nodeOfRecord(key, e.value, Date.now()));
  const tunnelRecords = decodedRecords(tunnels, (key, e) => viewOfRecord(key.slice(0, key.indexOf(".")), e.value, Date.now()));

  const warn = (what: string) => (err: unknown) => log.warn({ err: String(err) }, `presence: cannot ${what}`);
  /** Runs a step of a timer or a listener: a failure is logged, never thrown into NATS or the registry. */
  const guarded =
    <A extends unknown[]>(what: string, step: (...args: A) => void) =>
    (...args: A) => {
      try {
        step(...args);
      } catch (err) {
        warn(what)(err);
      }
    };
  const publishNode = guarded("publish this node", () => {
    nodes.kv.put(nodeId, toBinary(NodeSchema, deps.self())).catch(warn("publish this node"));
  });
  const putTunnel = (t: RelayTunnel) => {
    const v = viewOfTunnel(t);
    const entry = create(TunnelPresenceSchema, {
      ...v,
      targets: [...v.targets],
      connectTime: timestampOf(v.connectTime),
      leaveTime: timestampOf(v.leaveTime),
      rttMs: Math.round(v.rttMs ?? 0),
    });
    tunnels.kv.put(`${nodeId}.${v.tunnelId}`, toBinary(TunnelPresenceSchema, entry)).catch(warn("publish a tunnel"));
  };
  /** Puts new or changed tunnels, deletes gone ones. */
  const syncTunnels = guarded("publish tunnels", (all: boolean) => {
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
      const status = `${t.paused}/${t.leaveTime?.getTime() ?? ""}`;
      if (all || !known || (t.draining && !tunnelWasDraining.has(id)) || tunnelWasStatus.get(id) !== status) {
        written.set(id, t);
        if (t.draining) tunnelWasDraining.add(id);
        tunnelWasStatus.set(id, status);
        putTunnel(t);
      }
    }
    for (const id of tunnelWasDraining) if (!live.has(id)) tunnelWasDraining.delete(id);
    for (const id of tunnelWasStatus.keys()) if (!live.has(id)) tunnelWasStatus.delete(id);
  });

  deps.registry.onChange(() => syncTunnels(false));
  // After a reconnect: catch up on what others wrote meanwhile, and rewrite our own entries (puts may have failed).
  deps.onReconnect(
    guarded("resynchronise presence", () => {
      nodes.resync();
      tunnels.resync();
      publishNode();
      syncTunnels(true);
    }),
  );
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
      const node = nodeRecords.get(key, e);
      if (node) out.set(key, node);
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
      const out: TunnelView[] = [];
      for (const [key, e] of tunnels.entries()) {
        const view = tunnelRecords.get(key, e);
        if (!view || (tenant !== undefined && view.tenant !== tenant)) continue;
        if (view.nodeId === nodeId ? includeSelf : alive.has(view.nodeId)) out.push(view);
      }
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

/**
 * Each record of a mirror decoded and checked once per revision, not on every
 * read: the router reads presence on every request. `undefined`: the record at
 * that revision is not fit to use.
 */
function decodedRecords<T>(mirror: KvMirror, decode: (key: string, e: MirrorEntry) => T | undefined) {
  const cache = new Map<string, { revision: number; value: T | undefined }>();
  mirror.onChange((key, e) => {
    if (!e) cache.delete(key);
  });
  return {
    get(key: string, e: MirrorEntry): T | undefined {
      let hit = cache.get(key);
      if (!hit || hit.revision !== e.revision) {
        hit = { revision: e.revision, value: decode(key, e) };
        cache.set(key, hit);
      }
      return hit.value;
    },
  };
}

/** A Date as a Timestamp, or nothing for no date or one no Timestamp can hold (timestampFromDate would throw). */
function timestampOf(d: Date | undefined): Timestamp | undefined {
  return d && Number.isFinite(d.getTime()) ? timestampFromDate(d) : undefined;
}

/** Far enough ahead for any leave time a tunnel endpoint accepts (a year), short of what a Date cannot hold. */
const LATEST_MS = 2 * 366 * 86_400_000;
const MAX_RECORD_TARGETS = 1000;

/** A Timestamp read from a record, as a Date when it lies between 1970 and LATEST_MS from now. */
function dateOf(ts: Timestamp | undefined, now: number): Date | undefined {
  const ms = ts ? timestampInRange(ts, 0, now + LATEST_MS) : undefined;
  return ms === undefined ? undefined : new Date(ms);
}

/** A node's record from the bucket, when it decodes and says something sane about the node its key names. */
function nodeOfRecord(key: string, bytes: Uint8Array, now: number): Node | undefined {
  let n: Node;
  try {
    n = fromBinary(NodeSchema, bytes);
  } catch {
    return undefined;
  }
  const startOk = n.startTime === undefined || dateOf(n.startTime, now) !== undefined;
  if (n.nodeId !== key || !NODE_ID_PATTERN.test(n.nodeId) || n.version.length > 64 || n.address.length > 512 || !startOk) return undefined;
  // Shown in the console: a few lines of text, as this code writes them.
  if (n.certificateWarnings.length > MAX_CERT_WARNINGS || n.certificateWarnings.some((w) => w.length > 300 || /[\x00-\x1f\x7f]/.test(w))) return undefined;
  return n;
}

/** A tunnel's record from the bucket, as a view, when it decodes and every field is one a node would write. */
function viewOfRecord(node: string, bytes: Uint8Array, now: number): TunnelView | undefined {
  let p: TunnelPresence;
  try {
    p = fromBinary(TunnelPresenceSchema, bytes);
  } catch {
    return undefined;
  }
  const connectTime = dateOf(p.connectTime, now);
  const leaveTime = dateOf(p.leaveTime, now);
  const sane =
    p.nodeId === node &&
    isDnsLabel(p.tenant) &&
    connectTime !== undefined &&
    (p.leaveTime === undefined || leaveTime !== undefined) &&
    p.tunnelId.length <= 64 &&
    p.keyId.length <= 64 &&
    p.connectorId.length <= 128 &&
    p.connectorVersion.length <= 64 &&
    p.hostname.length <= 255 &&
    p.remoteAddress.length <= 64 &&
    p.targets.length <= MAX_RECORD_TARGETS &&
    p.targets.every(isDnsLabel);
  if (!sane) return undefined;
  return {
    nodeId: p.nodeId,
    tunnelId: p.tunnelId,
    tenant: p.tenant,
    keyId: p.keyId,
    connectorId: p.connectorId,
    connectorVersion: p.connectorVersion,
    hostname: p.hostname,
    remoteAddress: p.remoteAddress,
    connectTime,
    targets: p.targets,
    inFlight: p.inFlight,
    rttMs: p.rttMs || undefined,
    draining: p.draining,
    paused: p.paused,
    leaveTime,
  };
}
