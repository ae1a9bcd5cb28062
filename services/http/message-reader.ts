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
 * Reassembles messages in gRPC's framing (a 0 byte for uncompressed, a 4-byte
 * length, the message) from chunks of any size: a gRPC call's DATA frames, a
 * peer link's socket reads. No message may be longer than the limit, checked
 * on its header, before its bytes are held.
 */
export function createMessageReader(options: MessageReaderOptions): MessageReader {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let limit = options.maxBytes;
  let stopped = false;

  const stop = () => {
    stopped = true;
    pending = [];
    pendingBytes = 0;
  };

  const peek = (n: number): Buffer => {
    const first = pending[0]!;
    if (first.length >= n) return first;
    return Buffer.concat(pending, Math.min(pendingBytes, Math.max(n, first.length)));
  };

  /** Removes and returns the first `n` pending bytes (no copy when they lie in one chunk). */
  const take = (n: number): Buffer => {
    pendingBytes -= n;
    const first = pending[0]!;
    if (first.length === n) {
      pending.shift();
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
    return out;
  };

  const fail = (problem: FramingProblem) => {
    stop();
    options.onProblem(problem);
  };

  return {
    push(chunk) {
      if (stopped) return;
      pending.push(chunk);
      pendingBytes += chunk.length;
      while (!stopped && pendingBytes >= GRPC_PREFIX_BYTES) {
        const head = peek(GRPC_PREFIX_BYTES);
        if (head[0] !== 0) return fail({ kind: "compressed" });
        const length = head.readUInt32BE(1);
        if (length > limit) return fail({ kind: "too_large", length, limit });
        if (pendingBytes < GRPC_PREFIX_BYTES + length) return;
        options.onMessage(take(GRPC_PREFIX_BYTES + length).subarray(GRPC_PREFIX_BYTES));
      }
    },
    setLimit(maxBytes) {
      limit = maxBytes;
    },
    stop,
  };
}
