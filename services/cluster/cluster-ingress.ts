import { create, toBinary } from "@bufbuild/protobuf";
import { ErrorCode, type Msg, type NatsConnection, type NatsError } from "nats";
import { type Accepted, OpenExchangeSchema } from "../../gen/ferry/cluster/v1/cluster_pb.js";
import { type Frame, ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { FerryError } from "../../core/errors.js";
import { ExchangeLifetime } from "../../core/exchange/exchange-lifetime.js";
import { exchangeKey } from "../../core/exchange/ids.js";
import { MAX_FRAME_SIZE } from "../../core/exchange/protocol.js";
import { resetFrame } from "../../core/exchange/reset-frame.js";
import type { ExchangeRoute } from "../bus/exchange-bus.js";
import { readOpenResult } from "./cluster-messages.js";
import { type CrossExchange, type CrossExchanges, subscribeFrames } from "./cross-exchange.js";
import type { FramePublisher } from "./frame-publisher.js";
import type { PeerLinks } from "./peer-links.js";
import type { ClusterFault } from "./nats-callback.js";
import { afterFailedOpen, type OpenFailure, type TargetPresence } from "./open-retry.js";
import { requestFramesSubject, responseFramesSubject, routeSubject } from "./subjects.js";

/** How long the ingress waits for a node to take an exchange (twice: a request NATS lost is asked again). */
const OPEN_TIMEOUT_MS = 1_500;
/** While a tenant's connector moves between nodes (rolling restart), how long a request waits for it to come back. */
const MOVE_WAIT_MS = 3_000;

export interface IngressDeps {
  nc: NatsConnection;
  nodeId: string;
  publisher: FramePublisher;
  /** Links to other nodes: frames to a node with one up skip NATS. */
  links: PeerLinks;
  fault: ClusterFault;
  /** Whether a tunnel of this node serves the target. */
  servesHere(tenant: string, target: string): boolean;
  /** What presence knows of the target across the cluster. */
  known(tenant: string, target: string): TargetPresence;
}

export interface Ingress {
  /** The exchanges this node opened on other nodes' tunnels. */
  readonly exchanges: CrossExchanges;
  /** Opens an exchange on whichever node NATS hands it to; rejects with the client's FerryError. */
  open(tenant: string, target: string, exchangeId: Uint8Array, deliver: (frame: Frame) => void): Promise<ExchangeRoute>;
  close(): void;
}

/**
 * The ingress end of the cluster: reaches a connector held by another node
 * for a client that arrived here, and carries the exchange's frames over NATS.
 */
export function createIngress(deps: IngressDeps): Ingress {
  const { nc } = deps;
  const exchanges: CrossExchanges = new Map();
  const framesSub = subscribeFrames(nc, responseFramesSubject(deps.nodeId), exchanges, deps.fault);

  /** One ask of OpenExchange: the node's accept, or what went wrong. */
  const ask = async (tenant: string, target: string, request: Uint8Array, waitUntil: number): Promise<Accepted | OpenFailure> => {
    let answer: Msg;
    try {
      answer = await nc.request(routeSubject(tenant, target), request, { timeout: OPEN_TIMEOUT_MS });
    } catch (err) {
      const code = (err as NatsError).code;
      if (code === ErrorCode.Timeout) return { case: "timeout" };
      if (code !== ErrorCode.NoResponders) return { case: "nats_error", err };
      const presence = deps.known(tenant, target);
      return { case: "no_responders", tenant, target, presence, servesHere: deps.servesHere(tenant, target), canWait: Date.now() < waitUntil };
    }
    const result = readOpenResult(answer.data);
    if (!result.ok) {
      deps.fault(result.reason);
      return { case: "bad_answer" };
    }
    return result.value instanceof FerryError ? { case: "refused", refusal: result.value } : result.value;
  };

  const openRemote = async (tenant: string, target: string, exchangeId: Uint8Array): Promise<Accepted> => {
    const request = toBinary(OpenExchangeSchema, create(OpenExchangeSchema, { exchangeId, tenant, target, ingressNode: deps.nodeId }));
    const waitUntil = Date.now() + MOVE_WAIT_MS;
    for (let attempt = 1; ; attempt++) {
      const outcome = await ask(tenant, target, request, waitUntil);
      if (!("case" in outcome)) return outcome;
      const step = afterFailedOpen(outcome, attempt);
      if (!step.retry) throw step.error;
      if (step.waitMs > 0) await new Promise((r) => setTimeout(r, step.waitMs));
    }
  };

  return {
    exchanges,
    async open(tenant, target, exchangeId, deliver) {
      const accepted = await openRemote(tenant, target, exchangeId);
      const key = exchangeKey(exchangeId);
      const egressNode = accepted.egressNode;
      const toConnector = requestFramesSubject(egressNode);
      // The path is chosen once: frames of one exchange never take two and overtake each other.
      const link = deps.links.get(egressNode);
      const lifetime = new ExchangeLifetime();
      const ex: CrossExchange = {
        peer: egressNode,
        receive: (frame) => {
          if (lifetime.response(frame)) exchanges.delete(key);
          deliver(frame);
        },
        fail: (reason) => deliver(resetFrame(exchangeId, ResetCode.UNAVAILABLE, reason)),
        start: Date.now(),
        // The accept was the peer's first word: an ingress never counts as orphaned.
        lastFrame: Date.now(),
        ...(link ? { linkOut: link } : {}),
      };
      exchanges.set(key, ex);
      return {
        send(frame) {
          if (lifetime.request(frame)) exchanges.delete(key);
          if (link) link.push("req", frame);
          else deps.publisher.push(toConnector, frame);
        },
        requestWindow: accepted.requestWindow,
        maxFrameSize: Math.min(accepted.maxFrameSize || MAX_FRAME_SIZE, MAX_FRAME_SIZE),
        // Credits bound what each exchange has in flight; NATS itself has no back-pressure to wait on.
        ready: () => undefined,
      };
    },
    close() {
      framesSub.unsubscribe();
    },
  };
}
