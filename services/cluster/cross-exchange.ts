import type { NatsConnection, Subscription } from "nats";
import type { Accepted } from "../../gen/ferry/cluster/v1/cluster_pb.js";
import type { Frame } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { eachContained } from "../../core/each-contained.js";
import { exchangeKey } from "../../core/exchange/ids.js";
import { decodeConnectResponse } from "../../core/exchange/tunnel-codec.js";
import { type ClusterFault, guarded } from "./nats-callback.js";
import type { InboundLink } from "./peer-link-listener.js";
import type { PeerLink } from "./peer-links.js";

/** One exchange crossing NATS, on either end. */
export interface CrossExchange {
  /** The node at the other end. */
  peer: string;
  /** Frames arriving from the peer go here. */
  receive(frame: Frame): void;
  /** Fails the exchange locally because the path to the peer is gone. */
  fail(reason: string): void;
  start: number;
  /** When a frame of it last came from the peer (0: never). */
  lastFrame: number;
  /** Our frames to the peer go over this peer link (its loss fails the exchange); undefined: over NATS. */
  linkOut?: PeerLink;
  /** The peer's frames came over this link of its (its loss fails the exchange). */
  linkIn?: InboundLink;
  /** Egress: what we answered the OpenExchange with, for a repeated ask (the answer was lost). */
  accepted?: Accepted;
}

/** The exchanges one end of this node (egress or ingress) carries across NATS, by exchange key. */
export type CrossExchanges = Map<string, CrossExchange>;

/** Frames from any node for the exchanges of one end of this node, on that end's subject. */
export function subscribeFrames(nc: NatsConnection, subject: string, into: CrossExchanges, fault: ClusterFault): Subscription {
  return nc.subscribe(subject, { callback: guarded(fault, "frames callback threw", (msg) => deliverBatch(msg.data, into, fault)) });
}

/**
 * Hands each frame of one batch (a ConnectResponse holding `frames`, from NATS or a peer link) to its exchange.
 * `from`: the peer link the batch came on (NATS does not say who sent a message): frames for an exchange shared
 * with another node are refused.
 */
export function deliverBatch(bytes: Uint8Array, into: CrossExchanges, fault: ClusterFault, from?: InboundLink): void {
  let frames: Frame[];
  try {
    const m = decodeConnectResponse(bytes).message;
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
      if (from !== undefined) {
        if (ex.peer !== from.node) return fault("peer link frame for an exchange of another node");
        ex.linkIn = from;
      }
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
}

/** Forgets and fails each exchange of `ends` that `reasonFor` gives a reason for. */
export function failWhere(ends: readonly CrossExchanges[], reasonFor: (ex: CrossExchange) => string | undefined): void {
  for (const exchanges of ends) {
    for (const [key, ex] of [...exchanges]) {
      const reason = reasonFor(ex);
      if (reason === undefined) continue;
      exchanges.delete(key);
      ex.fail(reason);
    }
  }
}
