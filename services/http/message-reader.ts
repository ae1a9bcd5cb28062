import { GRPC_PREFIX_BYTES } from "../../core/exchange/tunnel-codec.js";

/** Why a reader stopped taking bytes: what the peer sent is not a message we take. */
export type FramingProblem = { kind: "compressed" } | { kind: "too_large"; length: number; limit: number };

export interface MessageReader {
  /** Takes bytes as they come; calls `onMessage` for each complete message, in order. */
  push(chunk: Buffer): void;
  /** The most a message may hold from now on (a handshake is small; what follows it may be more). */
  setLimit(maxBytes: number): void;
  /** Takes nothing more (the call or connection is over): drops what is pending. */
  stop(): void;
}

export interface MessageReaderOptions {
  maxBytes: number;
  /** One message, without its 5-byte header; a view into the chunk it came in when it lay in one. */
  onMessage(message: Buffer): void;
  /** Called once; the reader is stopped by then. */
  onProblem(problem: FramingProblem): void;
}

/**
 * Once this many chunks are pending, chunks shorter than SMALL_CHUNK are copied into a shared buffer, one pending
 * entry for a run of them: a peer sending a message a byte at a time (1-byte DATA frames, 1-byte TCP segments) would
 * otherwise make us hold an object of ~100 bytes per byte it sent. A message in a few chunks (all normal traffic)
 * takes no copy, and no buffer is kept while nothing is pending (an idle tunnel holds none).
 */
const COALESCE_AFTER = 16;
const SMALL_CHUNK = 1024;
const ACC_BYTES = 16 * 1024;

/**
 * Reassembles messages in gRPC's framing (a 0 byte for uncompressed, a 4-byte
 * length, the message) from chunks of any size: a gRPC call's DATA frames, a
 * peer link's socket reads. No message may be longer than the limit, checked
 * on its header, before its bytes are held; the work and memory per byte stay
 * the same however the peer cuts its bytes (each header is read once).
 */
export function createMessageReader(options: MessageReaderOptions): MessageReader {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  /** The body length of the message whose header has been read, until it is complete. */
  let need: number | undefined;
  let limit = options.maxBytes;
  let stopped = false;
  // Small chunks are copied together (see SMALL_CHUNK): the last pending entry grows while it lies at the end of `acc`.
  let acc: Buffer | undefined;
  let accUsed = 0;
  let accTail = false;

  const stop = () => {
    stopped = true;
    pending = [];
    pendingBytes = 0;
    acc = undefined;
  };

  const add = (chunk: Buffer) => {
    pendingBytes += chunk.length;
    if (chunk.length >= SMALL_CHUNK || (pending.length < COALESCE_AFTER && !accTail)) {
      pending.push(chunk);
      accTail = false;
      return;
    }
    if (!acc || accUsed + chunk.length > acc.length) {
      acc = Buffer.allocUnsafeSlow(ACC_BYTES);
      accUsed = 0;
      accTail = false;
    }
    chunk.copy(acc, accUsed);
    const end = accUsed + chunk.length;
    if (accTail) {
      const last = pending[pending.length - 1]!;
      pending[pending.length - 1] = acc.subarray(last.byteOffset - acc.byteOffset, end);
    } else {
      pending.push(acc.subarray(accUsed, end));
      accTail = true;
    }
    accUsed = end;
  };

  /** The 5-byte header at the front, copied from as many chunks as it spans (never more). */
  const header = (): Buffer => {
    const first = pending[0]!;
    if (first.length >= GRPC_PREFIX_BYTES) return first;
    const out = Buffer.allocUnsafe(GRPC_PREFIX_BYTES);
    let off = 0;
    for (let i = 0; off < GRPC_PREFIX_BYTES; i++) off += pending[i]!.copy(out, off, 0, Math.min(pending[i]!.length, GRPC_PREFIX_BYTES - off));
    return out;
  };

  /** Removes and returns the first `n` pending bytes (no copy when they lie in one chunk). */
  const take = (n: number): Buffer => {
    // Entries change below: a small chunk that comes next starts an entry of its own.
    accTail = false;
    pendingBytes -= n;
    const first = pending[0]!;
    if (first.length === n) {
      pending.shift();
      if (pending.length === 0) acc = undefined;
      return first;
    }
    if (first.length > n) {
      pending[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = pending[0]!;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) pending.shift();
      else pending[0] = c.subarray(k);
    }
    if (pending.length === 0) acc = undefined;
    return out;
  };

  const fail = (problem: FramingProblem) => {
    stop();
    options.onProblem(problem);
  };

  return {
    push(chunk) {
      if (stopped || chunk.length === 0) return;
      add(chunk);
      while (!stopped) {
        if (need === undefined) {
          if (pendingBytes < GRPC_PREFIX_BYTES) return;
          const head = header();
          if (head[0] !== 0) return fail({ kind: "compressed" });
          const length = head.readUInt32BE(1);
          if (length > limit) return fail({ kind: "too_large", length, limit });
          need = length;
        }
        if (pendingBytes < GRPC_PREFIX_BYTES + need) return;
        const message = take(GRPC_PREFIX_BYTES + need).subarray(GRPC_PREFIX_BYTES);
        need = undefined;
        options.onMessage(message);
      }
    },
    setLimit(maxBytes) {
      limit = maxBytes;
    },
    stop,
  };
}
