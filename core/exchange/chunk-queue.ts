/** Past this many queued chunks, small ones are copied together into shared buffers. */
const COALESCE_AFTER = 16;
/** A chunk up to this size is small: copying it costs less than keeping it as an object of its own. */
const SMALL_CHUNK = 4 * 1024;
/** Size of the buffers small chunks are copied into. */
const TAIL_BYTES = 16 * 1024;
/**
 * What the queued chunks may keep alive beyond twice their own bytes before
 * they are copied out: views into two normal tunnel batches (~1 MiB each) that
 * the queue straddles cost nothing; more gets compacted.
 */
const PIN_SLACK = 2 * 1024 * 1024;

/**
 * The body bytes an exchange holds for a consumer that is not taking them.
 * Flow control bounds the bytes; this bounds what they cost in memory:
 * - Chunks decoded as views keep their whole tunnel message alive. The queue
 *   counts the buffers it pins (each once per run of chunks sharing it) and,
 *   past twice its bytes plus PIN_SLACK, copies everything into one buffer.
 * - Every chunk is an object: a window of one-byte chunks would cost a hundred
 *   times the window. Past COALESCE_AFTER chunks, small ones are appended to a
 *   shared buffer, so the count stays near bytes / SMALL_CHUNK.
 */
export class ChunkQueue {
  /** Bytes queued. */
  bytes = 0;
  private chunks: Uint8Array[] = [];
  /** Memory the queued chunks keep alive (see above). */
  private pinned = 0;
  /** The buffer small chunks are being appended to: the last entry of the queue, not yet in `chunks`. */
  private tail: Buffer | undefined;
  private tailLength = 0;

  get empty(): boolean {
    return this.bytes === 0;
  }

  /** Chunks queued (the coalesced ones count once). */
  get length(): number {
    return this.chunks.length + (this.tail ? 1 : 0);
  }

  /** Memory the queue keeps alive, at least `bytes`. */
  get retained(): number {
    return this.pinned;
  }

  push(chunk: Uint8Array): void {
    const n = chunk.byteLength;
    if (n === 0) return;
    this.bytes += n;
    if (n <= SMALL_CHUNK && this.chunks.length >= COALESCE_AFTER) {
      if (this.tail && this.tailLength + n > this.tail.length) this.sealTail();
      if (!this.tail) {
        this.tail = Buffer.allocUnsafeSlow(TAIL_BYTES);
        this.pinned += TAIL_BYTES;
      }
      this.tail.set(chunk, this.tailLength);
      this.tailLength += n;
      return;
    }
    this.sealTail();
    this.append(chunk);
    if (this.pinned > 2 * this.bytes + PIN_SLACK) this.compact();
  }

  shift(): Uint8Array | undefined {
    const first = this.chunks.shift();
    if (first) {
      const next = this.chunks[0] ?? this.tail;
      if (!next || next.buffer !== first.buffer) this.pinned -= first.buffer.byteLength;
      this.bytes -= first.byteLength;
      return first;
    }
    if (!this.tail) return undefined;
    const out = this.tail.subarray(0, this.tailLength);
    this.tail = undefined;
    this.tailLength = 0;
    this.pinned = 0;
    this.bytes = 0;
    return out;
  }

  /** Drops everything; returns the bytes dropped. */
  clear(): number {
    const dropped = this.bytes;
    this.chunks = [];
    this.tail = undefined;
    this.tailLength = 0;
    this.pinned = 0;
    this.bytes = 0;
    return dropped;
  }

  private append(chunk: Uint8Array): void {
    const last = this.chunks[this.chunks.length - 1];
    if (!last || last.buffer !== chunk.buffer) this.pinned += chunk.buffer.byteLength;
    this.chunks.push(chunk);
  }

  /** The tail takes no more: it becomes an ordinary entry (its buffer is counted already). */
  private sealTail(): void {
    if (!this.tail) return;
    this.chunks.push(this.tail.subarray(0, this.tailLength));
    this.tail = undefined;
    this.tailLength = 0;
  }

  /** Copies everything queued into one buffer of its own. */
  private compact(): void {
    const out = Buffer.allocUnsafeSlow(this.bytes);
    let offset = 0;
    for (const c of this.chunks) {
      out.set(c, offset);
      offset += c.byteLength;
    }
    this.chunks = [out];
    this.pinned = out.byteLength;
  }
}
