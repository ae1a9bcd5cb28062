import type { Frame } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import type { ConnectRequest, ConnectResponse, Ping, Pong } from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";
import { eachContained } from "../each-contained.js";
import { Keepalive } from "./keepalive.js";

/** One message of either direction of the tunnel stream. */
export type TunnelMessage = ConnectRequest["message"] | ConnectResponse["message"];

/** The messages both directions carry, and both ends take alike. */
type Shared = "frames" | "ping" | "pong" | "goAway";

/** What only one direction carries (Hello and status from the connector, Welcome from the relay). */
export type OtherMessage<M extends TunnelMessage> = Exclude<M, { case: Shared }>;

/** What the keepalive queues towards the peer. */
type KeepaliveMessage = { case: "ping"; value: Ping } | { case: "pong"; value: Pong };

export interface TunnelControlOptions<M extends TunnelMessage> {
  /** The end's Outbox: pings and pongs go there, and past its hard limit the peer is not reading. */
  outbox: { readonly overflowing: boolean; pushControl(message: KeepaliveMessage): void };
  /** The peer keeps talking but does not read: the end drops the tunnel. */
  onOverflow(): void;
  /** One frame of a batch, for the end's exchanges. */
  onFrame(frame: Frame): void;
  /** `onFrame` threw for this frame: its exchange ends, not the tunnel. */
  onFrameFailed(frame: Frame, err: unknown): void;
  /** The peer sent GoAway (perhaps not for the first time). */
  onGoAway(reason: string): void;
  /** What only this end's peer sends (the connector's Hello and status); ignored when absent. */
  onOther?(message: OtherMessage<M>): void;
}

/**
 * How a tunnel end takes what its peer sends, the same at both ends: every
 * message is a sign of life, a peer that does not read loses the tunnel, pings
 * are answered within the keepalive's budget, and frames go to the end's
 * exchanges one by one. Each end passes in only what it does differently.
 */
export interface TunnelControl<M extends TunnelMessage> {
  /** Undefined until started (the connector learns the interval from Welcome). */
  readonly keepalive: Keepalive | undefined;
  /** Pings the peer every `intervalMs`; `onDead` runs once when it has gone silent. */
  startKeepalive(intervalMs: number, onDead: (silentMs: number) => void): Keepalive;
  /** Handles one message from the peer. */
  handle(message: M): void;
}

/** Made once per tunnel: handling a message allocates nothing of its own. */
export function createTunnelControl<M extends TunnelMessage>(opts: TunnelControlOptions<M>): TunnelControl<M> {
  const { outbox, onFrame, onFrameFailed } = opts;
  let keepalive: Keepalive | undefined;
  return {
    get keepalive() {
      return keepalive;
    },
    startKeepalive(intervalMs, onDead) {
      keepalive = new Keepalive({
        intervalMs,
        sendPing: (nonce) => outbox.pushControl({ case: "ping", value: { $typeName: "ferry.tunnel.v1.Ping", nonce } }),
        onDead,
      });
      return keepalive;
    },
    handle(message) {
      keepalive?.seen();
      if (outbox.overflowing) {
        // It keeps talking but does not read: what we owe it (pongs, frames) would pile up without end.
        opts.onOverflow();
        return;
      }
      const m: TunnelMessage = message;
      switch (m.case) {
        case "frames":
          // One frame whose handling throws costs only its own exchange, never the tunnel or the others in the batch.
          eachContained(m.value.frames, onFrame, onFrameFailed);
          return;
        case "ping":
          if (keepalive?.shouldAnswer()) {
            outbox.pushControl({ case: "pong", value: { $typeName: "ferry.tunnel.v1.Pong", nonce: m.value.nonce } });
          }
          return;
        case "pong":
          keepalive?.answered(m.value.nonce);
          return;
        case "goAway":
          opts.onGoAway(m.value.reason);
          return;
        default:
          opts.onOther?.(message as OtherMessage<M>);
      }
    },
  };
}
