import { toBinary } from "@bufbuild/protobuf";
import { ErrorCode, type Msg, type NatsConnection, type NatsError } from "nats";
import { type Accepted, type LinkOpenResult, type OpenExchange, OpenExchangeSchema } from "../../gen/ferry/cluster/v1/cluster_pb.js";
import { type Frame, ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { FerryError } from "../../core/errors.js";
import { ExchangeLifetime } from "../../core/exchange/exchange-lifetime.js";
import { exchangeKey } from "../../core/exchange/ids.js";
import { EXCHANGE_ID_BYTES, MAX_FRAME_SIZE } from "../../core/exchange/protocol.js";
import { resetFrame } from "../../core/exchange/reset-frame.js";
import type { ExchangeRoute } from "../bus/exchange-bus.js";
import { checkOpenResult, readOpenResult } from "./cluster-messages.js";
import { type CrossExchange, type CrossExchanges, subscribeFrames } from "./cross-exchange.js";
import type { FramePublisher } from "./frame-publisher.js";
import type { PeerLinks } from "./peer-links.js";
import type { ClusterFault } from "./nats-callback.js";
import { afterFailedOpen, type OpenFailure, type TargetPresence } from "./open-retry.js";
import { requestFramesSubject, responseFramesSubject, routeSubject } from "./subjects.js";

/** How long the ingress waits for a node to take an exchange (twice: a request NATS lost is asked again). */
const OPEN_TIMEOUT_MS = 1_500;
/** How long an open over a peer link may take before the ingress asks over NATS instead. */
const LINK_OPEN_TIMEOUT_MS = 1_000;
/** While a tenant's connector moves between nodes (rolling restart), how long a request waits for it to come back. */
const MOVE_WAIT_MS = 3_000;
/** Methods HTTP lets a client or a proxy send twice (RFC 9110, 9.2.2). */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

/**
 * Whether the request head may go behind a link open before its accept: an open that got no answer in time may
 * still have been taken when NATS gives the exchange to another node, so the target can get the request twice.
 */
const mayPipeline = (head: Frame): boolean => head.kind.case === "requestHead" && IDEMPOTENT.has(head.kind.value.method);

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
  /** Other nodes whose tunnels presence says serve the target now (not draining or paused). */
  holders(tenant: string, target: string): string[];
  /** Whether `node` can answer an open over its link to us (its "res" stream is up). */
  answersOverLink(node: string): boolean;
}

export interface Ingress {
  /** The exchanges this node opened on other nodes' tunnels. */
  readonly exchanges: CrossExchanges;
  /**
   * Opens an exchange on a linked node that holds the target (the open over the link), else on whichever node
   * NATS hands it to, and sends it `head`; rejects with the client's FerryError.
   */
  open(tenant: string, target: string, head: Frame, deliver: (frame: Frame) => void): Promise<ExchangeRoute>;
  /** The answer to an open we sent over a link, from the node at its other end. */
  answered(answer: LinkOpenResult, from: string): void;
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

  /** Opens sent over links, waiting for their answer, by exchange key. */
  const waiting = new Map<string, { node: string; settle(a: Accepted | undefined): void }>();

  /**
   * The open over a link, to one node presence says holds the target (chosen at random among those linked both
   * ways): its accept, or undefined (none linked, a refusal, no answer within LINK_OPEN_TIMEOUT_MS) for the
   * NATS path, which also sorts out every kind of refusal. An accept that came too late is not lost: the same
   * ask over NATS gets the same accept from that node. `headTo`: the node the request head went to behind the
   * open (mayPipeline); `ex` is registered for that node's frames from then on, since its answer's first frames
   * can come right behind the accept.
   */
  const openOverLink = (open: OpenExchange, head: Frame, ex: CrossExchange): Promise<{ accepted?: Accepted; headTo?: string }> => {
    const linked = deps.holders(open.tenant, open.target).filter((n) => deps.links.get(n) && deps.answersOverLink(n));
    if (linked.length === 0) return Promise.resolve({});
    const node = linked[Math.floor(Math.random() * linked.length)]!;
    const link = deps.links.get(node)!;
    const key = exchangeKey(open.exchangeId);
    const pipeline = mayPipeline(head);
    return new Promise((resolve) => {
      const timer = setTimeout(() => settle(undefined), LINK_OPEN_TIMEOUT_MS);
      const settle = (accepted: Accepted | undefined) => {
        clearTimeout(timer);
        waiting.delete(key);
        resolve({ ...(accepted ? { accepted } : {}), ...(pipeline ? { headTo: node } : {}) });
      };
      waiting.set(key, { node, settle });
      link.open(open);
      if (!pipeline) return;
      ex.peer = node;
      ex.linkOut = link;
      exchanges.set(key, ex);
      link.push("req", head);
    });
  };

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

  /** The open over NATS, asked again while afterFailedOpen says so. Nothing goes behind it before its accept. */
  const openOverNats = async (open: OpenExchange): Promise<Accepted> => {
    const request = toBinary(OpenExchangeSchema, open);
    const waitUntil = Date.now() + MOVE_WAIT_MS;
    for (let attempt = 1; ; attempt++) {
      const outcome = await ask(open.tenant, open.target, request, waitUntil);
      if (!("case" in outcome)) return outcome;
      const step = afterFailedOpen(outcome, attempt);
      if (!step.retry) throw step.error;
      if (step.waitMs > 0) await new Promise((r) => setTimeout(r, step.waitMs));
    }
  };

  return {
    exchanges,
    answered(answer, from) {
      const key = answer.exchangeId.length === EXCHANGE_ID_BYTES ? exchangeKey(answer.exchangeId) : undefined;
      const w = key === undefined ? undefined : waiting.get(key);
      if (!w || w.node !== from) return deps.fault("peer link answer to no open of ours");
      const result = answer.result ? checkOpenResult(answer.result) : undefined;
      if (!result?.ok) {
        deps.fault(result?.reason ?? "peer link answer without a result");
        return w.settle(undefined);
      }
      // A refusal (busy, draining) is the NATS path's to handle: another node may have room.
      if (result.value instanceof FerryError) return w.settle(undefined);
      if (result.value.egressNode !== from) {
        deps.fault("peer link accept naming another node");
        return w.settle(undefined);
      }
      w.settle(result.value);
    },
    async open(tenant, target, head, deliver) {
      const exchangeId = head.exchangeId;
      const key = exchangeKey(exchangeId);
      const lifetime = new ExchangeLifetime();
      let routed = false;
      const ex: CrossExchange = {
        peer: "",
        receive: (frame) => {
          if (lifetime.response(frame)) exchanges.delete(key);
          deliver(frame);
        },
        // Before the accept, a lost path is the open's to get around (it asks over NATS), not the exchange's end.
        fail: (reason) => routed && deliver(resetFrame(exchangeId, ResetCode.UNAVAILABLE, reason)),
        start: Date.now(),
        // The accept is the peer's first word: an ingress never counts as orphaned.
        lastFrame: Date.now(),
      };
      // A literal, not create(): it has every field, and create's reflection is a per-request cost.
      const message: OpenExchange = { $typeName: "ferry.cluster.v1.OpenExchange", exchangeId, tenant, target, ingressNode: deps.nodeId };
      let accepted: Accepted;
      let headSent: boolean;
      try {
        const overLink = await openOverLink(message, head, ex);
        accepted = overLink.accepted ?? (await openOverNats(message));
        // The head behind the link open reached the exchange if that node took it from the open: its answer over the
        // link says so, or its accept again over NATS (the link's answer was late).
        headSent = overLink.headTo === accepted.egressNode && (overLink.accepted !== undefined || accepted.openedOverLink);
      } catch (err) {
        if (exchanges.get(key) === ex) exchanges.delete(key);
        throw err;
      }
      const egressNode = accepted.egressNode;
      const toConnector = requestFramesSubject(egressNode);
      // The path is chosen once: frames of one exchange never take two and overtake each other.
      const link = deps.links.get(egressNode);
      ex.peer = egressNode;
      if (link) ex.linkOut = link;
      else delete ex.linkOut;
      routed = true;
      exchanges.set(key, ex);
      const send = (frame: Frame) => {
        if (lifetime.request(frame)) exchanges.delete(key);
        if (link) link.push("req", frame);
        else deps.publisher.push(toConnector, frame);
      };
      if (!headSent) send(head);
      else if (lifetime.request(head)) exchanges.delete(key);
      return {
        send,
        requestWindow: accepted.requestWindow,
        maxFrameSize: Math.min(accepted.maxFrameSize || MAX_FRAME_SIZE, MAX_FRAME_SIZE),
        // Credits bound what each exchange has in flight; NATS itself has no back-pressure to wait on.
        ready: () => undefined,
      };
    },
    close() {
      framesSub.unsubscribe();
      for (const w of [...waiting.values()]) w.settle(undefined);
    },
  };
}
