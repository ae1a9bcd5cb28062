import { create, toBinary } from "@bufbuild/protobuf";
import { ErrorCode, type Msg, type NatsError, type Subscription } from "nats";
import {
  type Accepted,
  DisconnectResponseSchema,
  HeartbeatSchema,
  OpenExchangeSchema,
  type OpenResult,
  OpenResultSchema,
} from "../../gen/ferry/cluster/v1/cluster_pb.js";
import { type Frame, ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { FerryError } from "../../core/errors.js";
import { eachContained } from "../../core/each-contained.js";
import { exchangeKey } from "../../core/exchange/ids.js";
import type { Logger } from "../../core/logger.js";
import { MAX_FRAME_SIZE } from "../../core/exchange/protocol.js";
import { resetFrame } from "../../core/exchange/reset-frame.js";
import { decodeConnectResponse } from "../../core/exchange/tunnel-codec.js";
import type { ExchangeBus } from "../bus/exchange-bus.js";
import { ExchangeLifetime } from "../../core/exchange/exchange-lifetime.js";
import type { PeerFaults } from "../limits/peer-faults.js";
import type { TunnelRegistry } from "../tunnel/tunnel-registry.js";
import { readDisconnectRequest, readHeartbeat, readOpenExchange, readOpenResult } from "./cluster-messages.js";
import { createFramePublisher } from "./frame-publisher.js";
import type { ClusterConnection } from "./nats-connection.js";
import {
  controlSubject,
  HEARTBEAT_ALL,
  heartbeatSubject,
  requestFramesSubject,
  responseFramesSubject,
  ROUTE_QUEUE,
  routeSubject,
} from "./subjects.js";

const HEARTBEAT_MS = 1_000;
/** A peer silent for this long is taken for dead: its exchanges fail instead of waiting for their deadline. */
const PEER_DEAD_MS = 3_500;
/** How long the ingress waits for a node to take an exchange (twice: a request NATS lost is asked again). */
const OPEN_TIMEOUT_MS = 1_500;
/** An accepted exchange whose ingress never sent a frame (its request timed out) is dropped after this. */
const ORPHAN_MS = 10_000;
/** While a tenant's connector moves between nodes (rolling restart), how long a request waits for it to come back. */
const MOVE_WAIT_MS = 3_000;
/** Nodes whose heartbeats are tracked at once: anyone on NATS could make up node ids without end. */
const MAX_PEERS = 1024;

/** One exchange crossing NATS, on either end. */
interface CrossExchange {
  /** The node at the other end. */
  peer: string;
  /** Frames arriving from the peer go here. */
  receive(frame: Frame): void;
  /** Fails the exchange locally because the path to the peer is gone. */
  fail(reason: string): void;
  start: number;
  /** When a frame of it last came from the peer (0: never). */
  lastFrame: number;
  /** Egress: what we answered the OpenExchange with, for a repeated ask (the answer was lost). */
  accepted?: Accepted;
}

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
  known(tenant: string, target: string): { serving: boolean; tenantOnline: boolean; paused?: boolean };
  isDraining(): boolean;
}

export interface ClusterBus extends ExchangeBus {
  /** Exchanges this node carries across NATS right now (either end). */
  readonly crossNode: number;
  /** Stops taking exchanges from other nodes (drain: this node's connectors are moving away). */
  stopRoutes(): void;
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
  const log = deps.log;
  const fault = (reason: string, details?: Record<string, unknown>) => deps.faults.fault("cluster", reason, details);
  /**
   * A NATS callback that cannot throw: nats.js treats an exception in a
   * subscription callback as fatal to the connection, so one bad message
   * would drop every cross-node exchange of this node.
   */
  const guarded =
    (reason: string, fn: (msg: Msg) => void) =>
    (err: Error | null, msg: Msg): void => {
      if (err) return;
      try {
        fn(msg);
      } catch (e) {
        fault(reason, { err: String(e), subject: msg.subject });
      }
    };
  const publisher = createFramePublisher(nc);
  const lastHeard = new Map<string, number>();
  const routes = new Map<string, Subscription>();
  let routesStopped = false;

  // Frames for exchanges this node takes part in, from any node: as the egress (towards its tunnels) and as the ingress.
  const egress = new Map<string, CrossExchange>();
  const ingress = new Map<string, CrossExchange>();
  const framesInto = (into: Map<string, CrossExchange>) => (msg: Msg) => {
    let frames: Frame[];
    try {
      const m = decodeConnectResponse(msg.data).message;
      if (m.case !== "frames") return fault("message without frames on a frames subject");
      frames = m.value.frames;
    } catch (e) {
      return fault("malformed frame batch", { err: String(e) });
    }
    const now = Date.now();
    eachContained(
      frames,
      (frame) => {
        const ex = into.get(exchangeKey(frame.exchangeId));
        if (!ex) return; // late frame of a finished exchange
        ex.lastFrame = now;
        ex.receive(frame);
      },
      (frame, e) => {
        const key = exchangeKey(frame.exchangeId);
        const ex = into.get(key);
        into.delete(key);
        fault("frame handler threw", { err: String(e) });
        ex?.fail("this relay node could not handle a frame of the exchange");
      },
    );
  };
  const requestFramesSub = nc.subscribe(requestFramesSubject(deps.nodeId), { callback: guarded("frames callback threw", framesInto(egress)) });
  const responseFramesSub = nc.subscribe(responseFramesSubject(deps.nodeId), { callback: guarded("frames callback threw", framesInto(ingress)) });

  function* all(): Generator<[string, CrossExchange, Map<string, CrossExchange>]> {
    for (const map of [egress, ingress]) for (const [key, ex] of [...map]) yield [key, ex, map];
  }

  // Liveness of the other nodes.
  const heartbeatSub = nc.subscribe(HEARTBEAT_ALL, {
    callback: guarded("heartbeat callback threw", (msg) => {
      const hb = readHeartbeat(msg.subject, msg.data);
      if (!hb.ok) return fault(hb.reason);
      if (!lastHeard.has(hb.value) && lastHeard.size >= MAX_PEERS) return fault("heartbeat from too many nodes");
      lastHeard.set(hb.value, Date.now());
    }),
  });
  const beat = () => {
    if (!deps.conn.connected) return;
    try {
      nc.publish(heartbeatSubject(deps.nodeId), toBinary(HeartbeatSchema, create(HeartbeatSchema, { nodeId: deps.nodeId, draining: deps.isDraining() })));
    } catch {
      // closed: nothing to say
    }
  };
  beat();
  const sweep = setInterval(() => {
    beat();
    const now = Date.now();
    for (const [key, ex, exchanges] of all()) {
      // Its frames count as signs of life too: under bulk traffic a heartbeat can queue behind megabytes of them.
      const heard = Math.max(lastHeard.get(ex.peer) ?? 0, ex.lastFrame, ex.start);
      if (now - heard > PEER_DEAD_MS) {
        exchanges.delete(key);
        ex.fail(`relay node ${ex.peer} stopped answering`);
      } else if (ex.lastFrame === 0 && now - ex.start > ORPHAN_MS) {
        exchanges.delete(key);
        ex.fail(`relay node ${ex.peer} never used the exchange`);
      }
    }
    for (const [node, at] of lastHeard) if (now - at > 60_000) lastHeard.delete(node);
  }, HEARTBEAT_MS);
  sweep.unref();

  // What was in flight across NATS may be lost with the connection: fail it now rather than at its deadline.
  deps.conn.onDisconnect(() => {
    for (const [key, ex, exchanges] of all()) {
      exchanges.delete(key);
      ex.fail("this relay node lost its connection to NATS");
    }
  });

  // Disconnect requests for tunnels this node holds (the admin API may be called on any node).
  const controlSub = nc.subscribe(controlSubject(deps.nodeId), {
    callback: guarded("control callback threw", (msg) => {
      const req = readDisconnectRequest(msg.data);
      if (!req.ok) return fault(req.reason);
      const { tenant, connectorId, reason } = req.value;
      deps
        .disconnectHere(tenant, connectorId, reason)
        .then((tunnels) => msg.respond(toBinary(DisconnectResponseSchema, create(DisconnectResponseSchema, { tunnels }))))
        .catch((e: unknown) => log.warn({ err: String(e), tenant }, "could not answer a disconnect request from the cluster"));
    }),
  });

  // ---------------------------------------------------------------- egress: take exchanges for our tunnels

  const takeExchange = (msg: Msg) => {
    const reply = (result: OpenResult["result"]) => {
      try {
        msg.respond(toBinary(OpenResultSchema, create(OpenResultSchema, { result })));
      } catch {
        // the asker is gone
      }
    };
    const checked = readOpenExchange(msg.data);
    if (!checked.ok) {
      fault(checked.reason);
      return reply({ case: "refused", value: { $typeName: "ferry.cluster.v1.Refused", kind: "invalid_argument", code: "bad_open_exchange", message: checked.reason, retryAfterSeconds: 0 } });
    }
    const open = checked.value;
    const key = exchangeKey(open.exchangeId);
    const known = egress.get(key);
    if (known) {
      // The same ask again (NATS lost our answer and the ingress retried): the same answer. Anyone else: no.
      if (known.peer === open.ingressNode && known.accepted) return reply({ case: "accepted", value: known.accepted });
      fault("open exchange for an exchange id in use");
      return reply({ case: "refused", value: { $typeName: "ferry.cluster.v1.Refused", kind: "already_exists", code: "exchange_in_use", message: "exchange id in use", retryAfterSeconds: 0 } });
    }
    try {
      if (deps.isDraining()) throw new FerryError("unavailable", "draining", "the relay node is shutting down", { retryAfterSeconds: 1 });
      const tunnel = deps.registry.pick(open.tenant, open.target);
      const ingressNode = open.ingressNode;
      const ex: CrossExchange = {
        peer: ingressNode,
        receive: (frame) => send(frame),
        fail: (reason) => send(resetFrame(open.exchangeId, ResetCode.CANCELLED, reason)),
        start: Date.now(),
        lastFrame: 0,
      };
      const toClient = responseFramesSubject(ingressNode);
      const send = tunnel.attach(open.exchangeId, (frame) => publisher.push(toClient, frame), () => egress.delete(key));
      ex.accepted = { $typeName: "ferry.cluster.v1.Accepted", egressNode: deps.nodeId, requestWindow: tunnel.info.requestWindow, maxFrameSize: MAX_FRAME_SIZE };
      egress.set(key, ex);
      reply({ case: "accepted", value: ex.accepted });
    } catch (err) {
      const e = err instanceof FerryError ? err : new FerryError("internal", "internal", String(err));
      reply({
        case: "refused",
        value: { $typeName: "ferry.cluster.v1.Refused", kind: e.kind, code: e.code, message: e.message, retryAfterSeconds: e.extra.retryAfterSeconds ?? 0 },
      });
    }
  };

  /** Subscribes exactly the (tenant, target) pairs some open tunnel of ours serves. */
  const refreshRoutes = () => {
    const wanted = new Set<string>();
    if (!routesStopped) {
      for (const t of deps.registry.tunnels()) {
        if (t.draining || t.closed || t.paused) continue;
        for (const target of t.info.targets) wanted.add(routeSubject(t.info.tenant, target));
      }
    }
    for (const [subject, sub] of routes) {
      if (!wanted.has(subject)) {
        // drain, not unsubscribe: requests the server routed here before it saw the UNSUB still get an answer
        // (a refusal the asker retries elsewhere) instead of vanishing into a timeout.
        sub.drain().catch(() => sub.unsubscribe());
        routes.delete(subject);
      }
    }
    for (const subject of wanted) {
      if (!routes.has(subject)) routes.set(subject, nc.subscribe(subject, { queue: ROUTE_QUEUE, callback: guarded("route callback threw", takeExchange) }));
    }
  };
  deps.registry.onChange(refreshRoutes);
  refreshRoutes();

  // ---------------------------------------------------------------- ingress: reach a connector anywhere

  const openRemote = async (tenant: string, target: string, exchangeId: Uint8Array) => {
    const request = toBinary(OpenExchangeSchema, create(OpenExchangeSchema, { exchangeId, tenant, target, ingressNode: deps.nodeId }));
    const waitUntil = Date.now() + MOVE_WAIT_MS;
    for (let attempt = 1; ; attempt++) {
      let answer: Msg;
      try {
        answer = await nc.request(routeSubject(tenant, target), request, { timeout: OPEN_TIMEOUT_MS });
      } catch (err) {
        const code = (err as NatsError).code;
        if (code === ErrorCode.NoResponders) {
          const known = deps.known(tenant, target);
          if (known.paused) {
            throw new FerryError("unavailable", "connector_paused", `the connector of target "${target}" is paused by its admin`, {
              retryAfterSeconds: 30,
            });
          }
          // A connector on its way from a draining node to another: worth a short wait, not a 503.
          if (known.serving && Date.now() < waitUntil) {
            await new Promise((r) => setTimeout(r, 100));
            continue;
          }
          if (!known.serving && known.tenantOnline && !deps.registry.serves(tenant, target)) {
            throw new FerryError("not_found", "target_not_found", `tenant "${tenant}" has no target "${target}"`);
          }
          throw new FerryError("unavailable", "no_connector", `no connector for target "${target}" is online`, { retryAfterSeconds: 5 });
        }
        // Safe to ask again: nothing reaches the connector before the ingress has the answer.
        if (code === ErrorCode.Timeout && attempt < 2) continue;
        if (code === ErrorCode.Timeout) {
          throw new FerryError("unavailable", "cluster_timeout", "no relay node answered in time for this target", { retryAfterSeconds: 1 });
        }
        throw new FerryError("unavailable", "cluster_unavailable", `the cluster cannot route requests right now: ${String(err)}`, {
          retryAfterSeconds: 1,
          cause: err,
        });
      }
      const result = readOpenResult(answer.data);
      if (!result.ok) {
        fault(result.reason);
        throw new FerryError("unavailable", "cluster_unavailable", "a relay node sent an answer this node cannot use", { retryAfterSeconds: 1 });
      }
      const r = result.value;
      if (!(r instanceof FerryError)) return r;
      // Another node of the queue group may have room, or a live tunnel where this one only had a draining one.
      if ((r.code === "connector_busy" || r.code === "no_connector" || r.code === "draining") && attempt < 3) continue;
      throw r;
    }
  };

  return {
    async open(tenant, target, exchangeId, deliver) {
      if (deps.registry.serves(tenant, target)) {
        try {
          return await deps.local.open(tenant, target, exchangeId, deliver);
        } catch (err) {
          // Busy or draining here: another node may still have room.
          if (!(err instanceof FerryError && err.kind === "unavailable")) throw err;
        }
      }
      const accepted = await openRemote(tenant, target, exchangeId);
      const key = exchangeKey(exchangeId);
      const egressNode = accepted.egressNode;
      const toConnector = requestFramesSubject(egressNode);
      const lifetime = new ExchangeLifetime();
      const ex: CrossExchange = {
        peer: egressNode,
        receive: (frame) => {
          if (lifetime.response(frame)) ingress.delete(key);
          deliver(frame);
        },
        fail: (reason) => deliver(resetFrame(exchangeId, ResetCode.UNAVAILABLE, reason)),
        start: Date.now(),
        // The accept was the peer's first word: an ingress never counts as orphaned.
        lastFrame: Date.now(),
      };
      ingress.set(key, ex);
      return {
        send(frame) {
          if (lifetime.request(frame)) ingress.delete(key);
          publisher.push(toConnector, frame);
        },
        requestWindow: accepted.requestWindow,
        maxFrameSize: Math.min(accepted.maxFrameSize || MAX_FRAME_SIZE, MAX_FRAME_SIZE),
        // Credits bound what each exchange has in flight; NATS itself has no back-pressure to wait on.
        ready: () => undefined,
      };
    },
    get crossNode() {
      return egress.size + ingress.size;
    },
    stopRoutes() {
      routesStopped = true;
      refreshRoutes();
    },
    close() {
      clearInterval(sweep);
      for (const sub of [requestFramesSub, responseFramesSub, heartbeatSub, controlSub, ...routes.values()]) sub.unsubscribe();
      routes.clear();
      for (const [key, ex, exchanges] of all()) {
        exchanges.delete(key);
        ex.fail("relay node shut down");
      }
    },
  };
}
