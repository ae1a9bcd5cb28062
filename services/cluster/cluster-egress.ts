import { create, toBinary } from "@bufbuild/protobuf";
import type { Msg, NatsConnection, Subscription } from "nats";
import { type OpenExchange, type OpenResult, OpenResultSchema } from "../../gen/ferry/cluster/v1/cluster_pb.js";
import { type Frame, ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { type ErrorKind, FerryError } from "../../core/errors.js";
import { exchangeKey } from "../../core/exchange/ids.js";
import { MAX_FRAME_SIZE } from "../../core/exchange/protocol.js";
import { resetFrame } from "../../core/exchange/reset-frame.js";
import type { TunnelRegistry } from "../tunnel/tunnel-registry.js";
import { checkOpenExchange, readOpenExchange } from "./cluster-messages.js";
import { type CrossExchange, type CrossExchanges, subscribeFrames } from "./cross-exchange.js";
import type { FramePublisher } from "./frame-publisher.js";
import type { PeerLinks } from "./peer-links.js";
import { type ClusterFault, guarded } from "./nats-callback.js";
import { requestFramesSubject, responseFramesSubject, ROUTE_QUEUE, routeSubject } from "./subjects.js";

export interface EgressDeps {
  nc: NatsConnection;
  nodeId: string;
  registry: TunnelRegistry;
  publisher: FramePublisher;
  /** Links to other nodes: frames to a node with one up skip NATS. */
  links: PeerLinks;
  fault: ClusterFault;
  isDraining(): boolean;
}

export interface Egress {
  /** The exchanges other nodes opened onto this node's tunnels. */
  readonly exchanges: CrossExchanges;
  /**
   * An OpenExchange that came over `from`'s peer link (checked here); the answer goes back over our link to that
   * node. Without one up, no answer: the asker falls back to NATS, where the same ask gets the same accept.
   */
  takeFromLink(open: OpenExchange, from: string): void;
  /** Stops taking exchanges from other nodes (drain: this node's connectors are moving away). */
  stopRoutes(): void;
  close(): void;
}

const refused = (kind: ErrorKind, code: string, message: string, retryAfterSeconds = 0): OpenResult["result"] => ({
  case: "refused",
  value: { $typeName: "ferry.cluster.v1.Refused", kind, code, message, retryAfterSeconds },
});

/**
 * The egress end of the cluster: takes exchanges that other nodes (the
 * ingress, where the client is) open onto this node's tunnels, and pipes
 * their frames between NATS and the tunnel.
 */
export function createEgress(deps: EgressDeps): Egress {
  const { nc, fault } = deps;
  const exchanges: CrossExchanges = new Map();
  const routes = new Map<string, Subscription>();
  let routesStopped = false;
  const framesSub = subscribeFrames(nc, requestFramesSubject(deps.nodeId), exchanges, fault);

  /** Takes an OpenExchange that passed its checks (from NATS, or `overLink` from a peer link): what to answer it with. */
  const take = (open: OpenExchange, overLink: boolean): OpenResult["result"] => {
    const key = exchangeKey(open.exchangeId);
    const known = exchanges.get(key);
    if (known) {
      // The same ask again (our answer was lost and the ingress asked again): the same answer. Anyone else: no.
      if (known.peer === open.ingressNode && known.accepted) return { case: "accepted", value: known.accepted };
      fault("open exchange for an exchange id in use");
      return refused("already_exists", "exchange_in_use", "exchange id in use");
    }
    try {
      if (deps.isDraining()) throw new FerryError("unavailable", "draining", "the relay node is shutting down", { retryAfterSeconds: 1 });
      const tunnel = deps.registry.pick(open.tenant, open.target);
      const ingressNode = open.ingressNode;
      // The path is chosen once: frames of one exchange never take two and overtake each other.
      const link = deps.links.get(ingressNode);
      const ex: CrossExchange = {
        peer: ingressNode,
        receive: (frame) => send(frame),
        fail: (reason) => send(resetFrame(open.exchangeId, ResetCode.CANCELLED, reason)),
        start: Date.now(),
        lastFrame: 0,
        ...(link ? { linkOut: link } : {}),
      };
      const toClient = responseFramesSubject(ingressNode);
      const toIngress = link ? (frame: Frame) => link.push("res", frame) : (frame: Frame) => deps.publisher.push(toClient, frame);
      const send = tunnel.attach(open.exchangeId, toIngress, () => exchanges.delete(key));
      ex.accepted = {
        $typeName: "ferry.cluster.v1.Accepted",
        egressNode: deps.nodeId,
        requestWindow: tunnel.info.requestWindow,
        maxFrameSize: MAX_FRAME_SIZE,
        openedOverLink: overLink,
      };
      exchanges.set(key, ex);
      return { case: "accepted", value: ex.accepted };
    } catch (err) {
      const e = err instanceof FerryError ? err : new FerryError("internal", "internal", String(err));
      return refused(e.kind, e.code, e.message, e.extra.retryAfterSeconds ?? 0);
    }
  };

  const takeExchange = (msg: Msg) => {
    const checked = readOpenExchange(msg.data);
    if (!checked.ok) fault(checked.reason);
    const result = checked.ok ? take(checked.value, false) : refused("invalid_argument", "bad_open_exchange", checked.reason);
    try {
      msg.respond(toBinary(OpenResultSchema, create(OpenResultSchema, { result })));
    } catch {
      // the asker is gone
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
      if (!routes.has(subject)) routes.set(subject, nc.subscribe(subject, { queue: ROUTE_QUEUE, callback: guarded(fault, "route callback threw", takeExchange) }));
    }
  };
  deps.registry.onChange(refreshRoutes);
  refreshRoutes();

  return {
    exchanges,
    takeFromLink(message, from) {
      const checked = checkOpenExchange(message);
      if (!checked.ok) return fault(checked.reason);
      if (checked.value.ingressNode !== from) return fault("peer link open for another node");
      const result = take(checked.value, true);
      deps.links.get(from)?.answer(checked.value.exchangeId, result);
    },
    stopRoutes() {
      routesStopped = true;
      refreshRoutes();
    },
    close() {
      for (const sub of [framesSub, ...routes.values()]) sub.unsubscribe();
      routes.clear();
    },
  };
}
