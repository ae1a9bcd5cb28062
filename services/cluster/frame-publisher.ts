import type { NatsConnection } from "nats";
import type { Frame } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { createFrameBatch, encodeFramesMessage, type FrameBatch } from "./frame-batch.js";

/** Sends exchange frames to other nodes over NATS, one message per subject per event-loop turn (frame-batch.ts). */
export interface FramePublisher {
  push(subject: string, frame: Frame): void;
}

const MAX_SUBJECTS = 2048;

export function createFramePublisher(nc: NatsConnection): FramePublisher {
  // One per frames subject of a node this node shares exchanges with: at most two per peer.
  const batches = new Map<string, FrameBatch<Buffer>>();
  return {
    push(subject, frame) {
      let batch = batches.get(subject);
      if (!batch) {
        // Node ids come from NATS: whatever made up thousands of them, the map stays small (a batch still flushes).
        if (batches.size >= MAX_SUBJECTS) batches.clear();
        batch = createFrameBatch(encodeFramesMessage, (messages) => {
          try {
            for (const message of messages) nc.publish(subject, message);
          } catch {
            // Closed: the exchanges fail by their deadline or when the peer's heartbeat stops.
          }
        });
        batches.set(subject, batch);
      }
      batch.push(frame);
    },
  };
}
