import type { Frame } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { frameBytes } from "../../core/exchange/outbox.js";
import { encodeTunnelMessage } from "../../core/exchange/tunnel-codec.js";

/** Well under NATS' default max_payload of 1 MiB, whatever the frames' headers weigh. */
const MAX_BATCH_BYTES = 256 * 1024;

/** Frames for one destination (a NATS subject, a peer link's connection). */
export interface FrameBatch {
  push(frame: Frame): void;
}

/** A batch as one NATS message: a ConnectResponse holding only `frames`, in the tunnel's codec. */
export const encodeFramesMessage = (frames: Frame[]): Buffer =>
  encodeTunnelMessage({ $typeName: "ferry.tunnel.v1.ConnectResponse", message: { case: "frames", value: { $typeName: "ferry.tunnel.v1.FrameBatch", frames } } });

/**
 * Gathers the frames pushed in one event-loop turn into one message (a small
 * request's head, body and end travel together), cut at MAX_BATCH_BYTES,
 * encoded by `encode` (encodeFramesMessage, or encodeFramesGathered for a
 * socket). `write` is called from a timer: it must not throw.
 */
export function createFrameBatch<M>(encode: (frames: Frame[]) => M, write: (message: M) => void): FrameBatch {
  let frames: Frame[] = [];
  let bytes = 0;
  let scheduled = false;
  const send = () => {
    const batch = frames;
    frames = [];
    bytes = 0;
    if (batch.length === 0) return;
    let message: M;
    try {
      message = encode(batch);
    } catch {
      // A frame that cannot be encoded: its exchange fails by its deadline, the others go on.
      return;
    }
    write(message);
  };
  const flush = () => {
    scheduled = false;
    send();
  };
  return {
    push(frame) {
      frames.push(frame);
      bytes += frameBytes(frame);
      if (bytes >= MAX_BATCH_BYTES) send();
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    },
  };
}
