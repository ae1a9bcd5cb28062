import type { NatsConnection, Subscription } from "nats";
import type { Accepted } from "../../gen/ferry/cluster/v1/cluster_pb.js";
import type { Frame } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { eachContained } from "../../core/each-contained.js";
import { exchangeKey } from "../../core/exchange/ids.js";
import { decodeConnectResponse } from "../../core/exchange/tunnel-codec.js";
import { type ClusterFault, guarded } from "./nats-callback.js";

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
  /** Egress: what we answered the OpenExchange with, for a repeated ask (the answer was lost). */
  accepted?: Accepted;
}

/** The exchanges one end of this node (egress or ingress) carries across NATS, by exchange key. */
export type CrossExchanges = Map<string, CrossExchange>;

/** Frames from any node for the exchanges of one end of this node, on that end's subject. */
export function subscribeFrames(nc: NatsConnection, subject: string, into: CrossExchanges, fault: ClusterFault): Subscription {
  return nc.subscribe(subject, {
    callback: guarded(fault, "frames callback threw", (msg) => {
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
    }),
  });
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
