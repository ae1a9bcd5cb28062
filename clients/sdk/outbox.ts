import type { Frame } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { MAX_BATCH_BYTES } from "./protocol.js";

/** What a tunnel writer takes next: a batch of frames or one control message. */
export type OutboxItem<C> = { kind: "frames"; frames: Frame[] } | { kind: "control"; message: C };

/**
 * The send queue of one tunnel. Exchanges push frames without waiting; the
 * tunnel's writer pulls batches as fast as the transport takes them, so frames
 * that pile up while a write is in progress leave together in one message.
 *
 * The queue needs no bound of its own: body bytes in it are limited by the
 * exchanges' flow-control windows, and the reader of the other end never stops
 * reading, so the writer always drains it.
 */
export class Outbox<C> implements AsyncIterable<OutboxItem<C>> {
  private readonly items: Array<{ frame: Frame } | { control: C }> = [];
  private wake: (() => void) | undefined;
  private closing = false;
  private aborted = false;

  pushFrame(frame: Frame): void {
    if (this.closing || this.aborted) return;
    this.items.push({ frame });
    this.notify();
  }

  pushControl(message: C): void {
    if (this.closing || this.aborted) return;
    this.items.push({ control: message });
    this.notify();
  }

  /** Ends the iteration once what is queued has been written. */
  close(): void {
    this.closing = true;
    this.notify();
  }

  /** Ends the iteration now, dropping what is queued. */
  abort(): void {
    this.aborted = true;
    this.items.length = 0;
    this.notify();
  }

  get size(): number {
    return this.items.length;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<OutboxItem<C>> {
    for (;;) {
      if (this.aborted) return;
      if (this.items.length === 0) {
        if (this.closing) return;
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      const first = this.items[0]!;
      if ("control" in first) {
        this.items.shift();
        yield { kind: "control", message: first.control };
        continue;
      }
      const frames: Frame[] = [];
      let bytes = 0;
      while (this.items.length > 0 && bytes < MAX_BATCH_BYTES) {
        const next = this.items[0]!;
        if (!("frame" in next)) break;
        this.items.shift();
        frames.push(next.frame);
        if (next.frame.kind.case === "data") bytes += next.frame.kind.value.chunk.byteLength;
      }
      yield { kind: "frames", frames };
    }
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
