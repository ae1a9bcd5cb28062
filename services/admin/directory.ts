import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Node, NodeSchema } from "../../gen/ferry/admin/v1/admin_service_pb.js";
import type { RelayTunnel } from "../tunnel/relay-tunnel.js";
import type { TunnelRegistry } from "../tunnel/tunnel-registry.js";

/** One live tunnel as the admin API shows it, wherever in the cluster it is held. */
export interface TunnelView {
  nodeId: string;
  tunnelId: string;
  tenant: string;
  keyId: string;
  connectorId: string;
  connectorVersion: string;
  hostname: string;
  remoteAddress: string;
  connectTime: Date;
  targets: readonly string[];
  inFlight: number;
  rttMs: number | undefined;
  draining: boolean;
  /** The connector's local admin paused it. */
  paused: boolean;
  /** When the connector leaves by itself (--for). */
  leaveTime: Date | undefined;
}

/** What ListNodes reports about this node. */
export interface NodeFacts {
  nodeId: string;
  version: string;
  address: string;
  startTime: Date;
  inFlight: number;
  draining: boolean;
  /** The TLS certificate in use, when the node serves TLS: its end and what the checks found wrong with it. */
  certificate?: CertificateFacts;
}

export interface CertificateFacts {
  expireTime: Date;
  warnings: string[];
}

/**
 * Where the admin API finds live nodes and tunnels: this node's registry on a
 * single node, the presence buckets in a cluster.
 */
export interface Directory {
  nodes(): Node[];
  tunnels(tenant?: string): TunnelView[];
  /** Closes a connector's tunnels wherever they are; resolves with how many were closed. */
  disconnect(tenant: string, connectorId: string, reason: string): Promise<number>;
}

export function viewOfTunnel(t: RelayTunnel): TunnelView {
  const i = t.info;
  return {
    nodeId: i.nodeId,
    tunnelId: i.id,
    tenant: i.tenant,
    keyId: i.keyId,
    connectorId: i.connectorId,
    connectorVersion: i.connectorVersion,
    hostname: i.hostname,
    remoteAddress: i.remoteAddress,
    connectTime: i.connectTime,
    targets: [...i.targets],
    inFlight: t.inFlight,
    rttMs: t.keepalive.lastRttMs,
    draining: t.draining,
    paused: t.paused,
    leaveTime: t.leaveTime,
  };
}

export function nodeOf(n: NodeFacts, tunnels: number): Node {
  return create(NodeSchema, {
    nodeId: n.nodeId,
    version: n.version,
    address: n.address,
    startTime: timestampFromDate(n.startTime),
    tunnels,
    inFlight: n.inFlight,
    draining: n.draining,
    certificateExpireTime: n.certificate ? timestampFromDate(n.certificate.expireTime) : undefined,
    certificateWarnings: n.certificate?.warnings ?? [],
  });
}

/**
 * This node alone. Probe tunnels (ferry doctor) are not listed: they carry no
 * traffic, and a Connector has no way to say it is a probe (their connect and
 * disconnect are audited, as connector.probe). DisconnectConnector ends them
 * like any tunnel of the connector id it names.
 */
export function localDirectory(registry: TunnelRegistry, node: () => NodeFacts): Directory {
  return {
    nodes: () => [nodeOf(node(), registry.tunnels().length)],
    tunnels: (tenant) => registry.tunnels(tenant).map(viewOfTunnel),
    async disconnect(tenant, connectorId, reason) {
      const tunnels = registry.held(tenant).filter((t) => t.info.connectorId === connectorId);
      for (const t of tunnels) t.close(reason, { status: "unavailable" });
      return tunnels.length;
    },
  };
}
