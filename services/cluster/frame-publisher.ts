import type { NatsConnection } from "nats";
import type { Frame } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { frameBytes } from "../../core/exchange/outbox.js";
import { encodeTunnelMessage } from "../../core/exchange/tunnel-codec.js";

/** Well under NATS' default max_payload of 1 MiB, whatever the frames' headers weigh. */
const MAX_BATCH_BYTES = 256 * 1024;

/**
 * Sends exchange frames to other nodes, one NATS message per subject per
 * event-loop turn (a small request's head, body and end travel together), in
 * the tunnel's own encoding.
 */
export interface FramePublisher {
  push(subject: string, frame: Frame): void;
}

export function createFramePublisher(nc: NatsConnection): FramePublisher {
  const pending = new Map<string, { frames: Frame[]; bytes: number }>();
  let scheduled = false;

  const publish = (subject: string, frames: Frame[]) => {
    // From a timer: nothing may throw out of here (a closed connection, or a frame that cannot be encoded).
    try {
      nc.publish(subject, encodeTunnelMessage({ $typeName: "ferry.tunnel.v1.ConnectResponse", message: { case: "frames", value: { $typeName: "ferry.tunnel.v1.FrameBatch", frames } } }));
    } catch {
      // The exchanges fail by their deadline or when the peer's heartbeat stops.
    }
  };
  const flush = () => {
    scheduled = false;
    for (const [subject, batch] of pending) publish(subject, batch.frames);
    pending.clear();
  };

  return {
    push(subject, frame) {
      let batch = pending.get(subject);
      if (!batch) pending.set(subject, (batch = { frames: [], bytes: 0 }));
      batch.frames.push(frame);
      batch.bytes += frameBytes(frame);
      if (batch.bytes >= MAX_BATCH_BYTES) {
        pending.delete(subject);
        publish(subject, batch.frames);
      }
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    },
  };
}
