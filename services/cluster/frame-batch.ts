import type { Frame } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { frameBytes } from "../../core/exchange/outbox.js";
import { encodeTunnelMessage } from "../../core/exchange/tunnel-codec.js";

/** Well under NATS' default max_payload of 1 MiB, whatever the frames' headers weigh. */
const MAX_BATCH_BYTES = 256 * 1024;

/** Frames for one destination (a NATS subject, a peer link's stream). */
export interface FrameBatch {
  push(frame: Frame): void;
}

/**
 * Gathers the frames pushed in one event-loop turn into one message (a small
 * request's head, body and end travel together), cut at MAX_BATCH_BYTES, in
 * the tunnel's own encoding (`prefix`: with the 5-byte gRPC message header).
 * `write` is called from a timer: it must not throw.
 */
export function createFrameBatch(write: (message: Buffer) => void, prefix = false): FrameBatch {
  let frames: Frame[] = [];
  let bytes = 0;
  let scheduled = false;
  const send = () => {
    const batch = frames;
    frames = [];
    bytes = 0;
    if (batch.length === 0) return;
    let message: Buffer;
    try {
      message = encodeTunnelMessage({ $typeName: "ferry.tunnel.v1.ConnectResponse", message: { case: "frames", value: { $typeName: "ferry.tunnel.v1.FrameBatch", frames: batch } } }, prefix);
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
