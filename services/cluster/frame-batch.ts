import type { Frame } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { frameBytes } from "../../core/exchange/outbox.js";
import { encodeTunnelMessage } from "../../core/exchange/tunnel-codec.js";

/** Well under NATS' default max_payload of 1 MiB, whatever the frames' headers weigh. */
const MAX_BATCH_BYTES = 256 * 1024;

/** Frames for one destination (a NATS subject, a peer link's connection), and whole messages between them. */
export interface FrameBatch<M> {
  push(frame: Frame): void;
  /** A message already encoded (a link's open or answer): after the frames pushed before it, before those after. */
  message(message: M): void;
}

/** A batch as one NATS message: a ConnectResponse holding only `frames`, in the tunnel's codec. */
export const encodeFramesMessage = (frames: Frame[]): Buffer =>
  encodeTunnelMessage({ $typeName: "ferry.tunnel.v1.ConnectResponse", message: { case: "frames", value: { $typeName: "ferry.tunnel.v1.FrameBatch", frames } } });

/**
 * Gathers what is pushed in one event-loop turn: the frames into messages
 * (a small request's head, body and end travel together), cut at
 * MAX_BATCH_BYTES and encoded by `encode` (encodeFramesMessage, or
 * encodeFramesGathered for a socket), all handed to `write` at the end of the
 * turn, in order: one publish each, or one socket write for all (a request's
 * open and its head in one syscall). `write` is called from a timer: it must
 * not throw.
 */
export function createFrameBatch<M>(encode: (frames: Frame[]) => M, write: (messages: M[]) => void): FrameBatch<M> {
  let messages: M[] = [];
  let frames: Frame[] = [];
  let bytes = 0;
  let scheduled = false;
  /** The frames so far as one message, behind what is already there. */
  const cut = () => {
    if (frames.length === 0) return;
    const batch = frames;
    frames = [];
    bytes = 0;
    try {
      messages.push(encode(batch));
    } catch {
      // A frame that cannot be encoded: its exchange fails by its deadline, the others go on.
    }
  };
  const flush = () => {
    scheduled = false;
    cut();
    if (messages.length === 0) return;
    const out = messages;
    messages = [];
    write(out);
  };
  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(flush);
  };
  return {
    push(frame) {
      frames.push(frame);
      bytes += frameBytes(frame);
      if (bytes >= MAX_BATCH_BYTES) cut();
      schedule();
    },
    message(message) {
      cut();
      messages.push(message);
      schedule();
    },
  };
}
