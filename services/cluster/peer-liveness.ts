import { create, toBinary } from "@bufbuild/protobuf";
import { HeartbeatSchema } from "../../gen/ferry/cluster/v1/cluster_pb.js";
import { type Beat, readBeat } from "./cluster-messages.js";
import { type CrossExchanges, failWhere } from "./cross-exchange.js";
import { type ClusterFault, guarded } from "./nats-callback.js";
import type { ClusterConnection } from "./nats-connection.js";
import { HEARTBEAT_ALL, heartbeatSubject } from "./subjects.js";

const HEARTBEAT_MS = 1_000;
/** A peer silent for this long is taken for dead: its exchanges fail instead of waiting for their deadline. */
const PEER_DEAD_MS = 3_500;
/** An accepted exchange whose ingress never sent a frame (its request timed out) is dropped after this. */
const ORPHAN_MS = 10_000;
/** Nodes whose heartbeats are tracked at once: anyone on NATS could make up node ids without end. */
const MAX_PEERS = 1024;
/** A node not heard of for this long is forgotten. */
const FORGET_MS = 60_000;

export interface PeerLivenessDeps {
  conn: ClusterConnection;
  nodeId: string;
  isDraining(): boolean;
  fault: ClusterFault;
  /** What this node shares with its peers: the egress's and the ingress's exchanges. */
  ends: readonly CrossExchanges[];
  /** What our heartbeat says of our peer link: where we take one (or ""), and the digest of the token we present. */
  link: { address: string; tokenDigest: Uint8Array };
  /** Each heartbeat of another node, and each node that fell silent (peer-links.ts follows them). */
  onBeat(beat: Beat): void;
  onSilent(node: string): void;
}

export interface PeerLiveness {
  /**
   * The relay nodes taking clients now: this one and every peer heard from
   * within PEER_DEAD_MS that is not draining; at least 1. Kept as a number
   * (recounted each second and when a peer comes or starts draining), so it
   * costs nothing per call: the rate limits read it on every request.
   */
  liveNodes(): number;
  /** The peer-token digest a live node announces, or undefined. */
  tokenDigest(node: string): Uint8Array | undefined;
  close(): void;
}

/**
 * Liveness of the other nodes. NATS is at-most-once, so this node sends a
 * heartbeat each second and fails (never replays) the exchanges it shares
 * with a peer that falls silent, and all of them when it loses NATS itself.
 */
export function watchPeers(deps: PeerLivenessDeps): PeerLiveness {
  const { nc } = deps.conn;
  const lastHeard = new Map<string, { at: number; draining: boolean; tokenDigest: Uint8Array }>();
  // A draining peer still finishes its exchanges (it is alive for those), but its load balancer has moved its
  // clients to the others (/readyz is 503), so for the rate limits' shares it no longer counts.
  const takesClients = (node: string, now: number): boolean => {
    const heard = lastHeard.get(node);
    return heard !== undefined && !heard.draining && now - heard.at <= PEER_DEAD_MS && node !== deps.nodeId;
  };
  let live = 1;
  const recount = (now: number) => {
    let n = 1; // this node, draining or not: it enforces its own share either way
    for (const node of lastHeard.keys()) if (takesClients(node, now)) n++;
    live = n;
  };
  const heartbeatSub = nc.subscribe(HEARTBEAT_ALL, {
    callback: guarded(deps.fault, "heartbeat callback threw", (msg) => {
      const hb = readBeat(msg.subject, msg.data);
      if (!hb.ok) return deps.fault(hb.reason);
      const { node, draining, peerTokenDigest } = hb.value;
      if (!lastHeard.has(node) && lastHeard.size >= MAX_PEERS) return deps.fault("heartbeat from too many nodes");
      const now = Date.now();
      const counted = takesClients(node, now);
      lastHeard.set(node, { at: now, draining, tokenDigest: peerTokenDigest });
      // Our own heartbeat counts for the exchanges whose both ends are here (NATS routed one back to us).
      if (node !== deps.nodeId) deps.onBeat(hb.value);
      // A peer coming (or back) or starting to drain changes the shares at once; one falling silent, at the sweep.
      if (takesClients(node, now) !== counted) recount(now);
    }),
  });
  const beat = () => {
    if (!deps.conn.connected) return;
    try {
      const beat = create(HeartbeatSchema, { nodeId: deps.nodeId, draining: deps.isDraining(), linkAddress: deps.link.address, peerTokenDigest: deps.link.tokenDigest });
      nc.publish(heartbeatSubject(deps.nodeId), toBinary(HeartbeatSchema, beat));
    } catch {
      // closed: nothing to say
    }
  };
  beat();
  const sweep = setInterval(() => {
    beat();
    const now = Date.now();
    failWhere(deps.ends, (ex) => {
      // Its frames count as signs of life too: under bulk traffic a heartbeat can queue behind megabytes of them.
      const heard = Math.max(lastHeard.get(ex.peer)?.at ?? 0, ex.lastFrame, ex.start);
      if (now - heard > PEER_DEAD_MS) return `relay node ${ex.peer} stopped answering`;
      if (ex.lastFrame === 0 && now - ex.start > ORPHAN_MS) return `relay node ${ex.peer} never used the exchange`;
      return undefined;
    });
    for (const [node, heard] of lastHeard) {
      if (now - heard.at > PEER_DEAD_MS) deps.onSilent(node);
      if (now - heard.at > FORGET_MS) lastHeard.delete(node);
    }
    recount(now);
  }, HEARTBEAT_MS);
  sweep.unref();

  // What was in flight across NATS may be lost with the connection: fail it now rather than at its deadline.
  deps.conn.onDisconnect(() => failWhere(deps.ends, () => "this relay node lost its connection to NATS"));

  return {
    liveNodes: () => live,
    tokenDigest(node) {
      const heard = lastHeard.get(node);
      return heard && Date.now() - heard.at <= PEER_DEAD_MS && heard.tokenDigest.length > 0 ? heard.tokenDigest : undefined;
    },
    close() {
      clearInterval(sweep);
      heartbeatSub.unsubscribe();
      live = 1;
    },
  };
}
