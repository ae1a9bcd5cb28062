import type { Frame } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { MAX_BATCH_BYTES, OUTBOX_HARD_LIMIT, OUTBOX_HIGH_WATER, OUTBOX_LOW_WATER } from "./protocol.js";

/** What a queued control message (ping, pong, go-away) costs in memory, roughly. */
const CONTROL_BYTES = 256;

/** What a tunnel writer takes next: a batch of frames or one control message. */
export type OutboxItem<C> = { kind: "frames"; frames: Frame[] } | { kind: "control"; message: C };

/** Rough wire cost of a frame: its body bytes plus an allowance for the rest. */
export function frameBytes(frame: Frame): number {
  const k = frame.kind;
  if (k.case === "data") return k.value.chunk.byteLength + 32;
  if (k.case === "requestHead" || k.case === "responseHead") {
    return k.value.headers.reduce((n, h) => n + h.name.length + h.value.length + 8, 256);
  }
  return 64;
}

/**
 * The send queue of one tunnel. Exchanges push frames without waiting; the
 * tunnel's writer pulls batches as fast as the transport takes them, so frames
 * that pile up while a write is in progress leave together in one message.
 *
 * Per-exchange windows bound what one exchange queues; the queue's own
 * high-water mark bounds the tunnel as a whole when the transport is the
 * bottleneck: body writers wait on ready() and new exchanges avoid a congested
 * tunnel. Past the hard limit the peer is not reading at all, and the owner
 * drops the tunnel.
 */
export class Outbox<C> implements AsyncIterable<OutboxItem<C>> {
  private readonly items: Array<{ frame: Frame; bytes: number } | { control: C; bytes: number }> = [];
  private wake: (() => void) | undefined;
  private closing = false;
  private aborted = false;
  private queuedBytes = 0;
  private readyWaiters: Array<() => void> = [];
  private flushScheduled = false;

  pushFrame(frame: Frame): void {
    if (this.closing || this.aborted) return;
    const bytes = frameBytes(frame);
    this.queuedBytes += bytes;
    this.items.push({ frame, bytes });
    this.notify();
  }

  /** Bytes waiting to be written. */
  get bytes(): number {
    return this.queuedBytes;
  }

  /** True above the high-water mark: new exchanges should go elsewhere. */
  get congested(): boolean {
    return this.queuedBytes >= OUTBOX_HIGH_WATER;
  }

  /**
   * True when far more is queued than flow control allows for a peer that
   * reads: it is not reading (or floods us with pings to answer). The tunnel
   * must be dropped before it eats the process's memory.
   */
  get overflowing(): boolean {
    return this.queuedBytes >= OUTBOX_HARD_LIMIT;
  }

  /** Resolves (or returns undefined at once) when body writers may queue more. */
  ready(): Promise<void> | undefined {
    if (this.queuedBytes < OUTBOX_HIGH_WATER || this.aborted || this.closing) return undefined;
    return new Promise((resolve) => this.readyWaiters.push(resolve));
  }

  pushControl(message: C): void {
    if (this.closing || this.aborted) return;
    this.queuedBytes += CONTROL_BYTES;
    this.items.push({ control: message, bytes: CONTROL_BYTES });
    this.notify();
  }

  /** Ends the iteration once what is queued has been written. */
  close(): void {
    this.closing = true;
    this.notify();
    this.releaseWriters();
  }

  /** Ends the iteration now, dropping what is queued. */
  abort(): void {
    this.aborted = true;
    this.items.length = 0;
    this.queuedBytes = 0;
    this.notify();
    this.releaseWriters();
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
        this.queuedBytes -= first.bytes;
        if (this.queuedBytes < OUTBOX_LOW_WATER) this.releaseWriters();
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
        bytes += next.bytes;
      }
      this.queuedBytes -= bytes;
      if (this.queuedBytes < OUTBOX_LOW_WATER) this.releaseWriters();
      yield { kind: "frames", frames };
    }
  }

  private releaseWriters(): void {
    for (const w of this.readyWaiters.splice(0)) w();
  }

  /**
   * Wakes a waiting writer after the current turn of the event loop, not at
   * once: frames pushed by every socket callback of this turn (many requests
   * arriving together) then leave in one message and one write.
   */
  private notify(): void {
    if (!this.wake || this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      const wake = this.wake;
      this.wake = undefined;
      wake?.();
    });
  }
}
