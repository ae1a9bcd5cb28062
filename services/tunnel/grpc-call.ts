import { constants as h2 } from "node:http2";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { GRPC_PREFIX_BYTES } from "../../core/exchange/tunnel-codec.js";
import { encodeGrpcMessage, GrpcStatus } from "../http/grpc-status.js";


/** A failure to end the call with: a gRPC status and a message for the peer. */
export class GrpcError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The server side of one gRPC bidirectional-streaming call on an HTTP/2
 * stream: length-prefixed messages in, length-prefixed messages out, status in
 * the trailers. Just what the tunnel needs, without a framework's per-message
 * promise machinery on the hottest path of the relay.
 */
export class GrpcCall {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private headersSent = false;
  private done = false;
  private onMessageCb: ((bytes: Buffer) => void) | undefined;
  /** Messages that arrived while nobody listened (between Hello and the tunnel taking over). */
  private queued: Buffer[] = [];
  private onCloseCb: (() => void) | undefined;

  constructor(
    private readonly req: Http2ServerRequest,
    private readonly res: Http2ServerResponse,
    private readonly maxMessageBytes: number,
  ) {
    req.on("data", (chunk: Buffer) => this.receive(chunk));
    // The peer went away (reset, connection lost) before we finished.
    res.once("close", () => {
      if (this.done) return;
      this.done = true;
      this.onCloseCb?.();
    });
  }

  get remoteAddress(): string {
    return this.req.socket.remoteAddress ?? "";
  }

  header(name: string): string | undefined {
    const v = this.req.headers[name];
    return Array.isArray(v) ? v.join(", ") : v;
  }

  /**
   * Delivers each complete message (the body without the 5-byte prefix).
   * Without a listener, messages wait for the next one to be set.
   */
  onMessage(cb: ((bytes: Buffer) => void) | undefined): void {
    this.onMessageCb = cb;
    while (cb && this.queued.length > 0 && this.onMessageCb === cb) cb(this.queued.shift()!);
  }

  /** Called once if the peer goes away before finish(). */
  onClose(cb: () => void): void {
    this.onCloseCb = cb;
  }

  /** Sends the response headers now (a call that only receives says it was accepted). */
  accept(): void {
    if (!this.done) this.sendHeaders();
  }

  /** Writes one already-framed message; false means wait for drained(). */
  send(framed: Buffer): boolean {
    if (this.done) return true;
    this.sendHeaders();
    return this.res.write(framed);
  }

  drained(): Promise<void> {
    if (this.done) return Promise.resolve();
    return new Promise((resolve) => {
      const go = () => {
        this.res.off("drain", go);
        this.res.off("close", go);
        resolve();
      };
      this.res.on("drain", go);
      this.res.on("close", go);
    });
  }

  /** Ends the call with a status. Before any message this is a trailers-only response. */
  finish(status: number = GrpcStatus.OK, message = ""): void {
    if (this.done) return;
    this.done = true;
    const trailers: Record<string, string> = { "grpc-status": String(status) };
    if (message) trailers["grpc-message"] = encodeGrpcMessage(message);
    if (!this.headersSent) {
      // Trailers-only: status in the one HEADERS frame, with END_STREAM (what gRPC clients expect).
      this.headersSent = true;
      const stream = this.req.stream;
      if (!stream.destroyed && !stream.headersSent) {
        stream.respond({ ":status": 200, "content-type": "application/grpc", ...trailers }, { endStream: true });
      }
      return;
    }
    this.res.addTrailers(trailers);
    this.res.end();
  }

  /** Resets the HTTP/2 stream: for a peer that is gone, where a graceful end would wait forever. */
  kill(): void {
    this.done = true;
    this.req.stream.close(h2.NGHTTP2_CANCEL);
  }

  private sendHeaders(): void {
    if (this.headersSent) return;
    this.headersSent = true;
    this.res.writeHead(200, { "content-type": "application/grpc" });
  }

  /** Reassembles length-prefixed messages from DATA chunks of any size. */
  private receive(chunk: Buffer): void {
    if (this.done) return;
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    while (this.pendingBytes >= GRPC_PREFIX_BYTES) {
      const head = this.peek(GRPC_PREFIX_BYTES);
      if (head[0] !== 0) {
        return this.fail(GrpcStatus.INTERNAL, "compressed messages are not accepted on the tunnel");
      }
      const len = head.readUInt32BE(1);
      if (len > this.maxMessageBytes) {
        return this.fail(GrpcStatus.RESOURCE_EXHAUSTED, `message of ${len} bytes exceeds the limit of ${this.maxMessageBytes}`);
      }
      if (this.pendingBytes < GRPC_PREFIX_BYTES + len) return;
      const message = this.take(GRPC_PREFIX_BYTES + len).subarray(GRPC_PREFIX_BYTES);
      if (this.onMessageCb) this.onMessageCb(message);
      else this.queued.push(message);
      if (this.done) return;
    }
  }

  private fail(status: number, message: string): void {
    this.pending = [];
    this.pendingBytes = 0;
    this.finish(status, message);
    this.onCloseCb?.();
  }

  private peek(n: number): Buffer {
    const first = this.pending[0]!;
    if (first.length >= n) return first;
    return Buffer.concat(this.pending, Math.min(this.pendingBytes, Math.max(n, first.length)));
  }

  /** Removes and returns the first `n` pending bytes (no copy when they lie in one chunk). */
  private take(n: number): Buffer {
    this.pendingBytes -= n;
    const first = this.pending[0]!;
    if (first.length === n) {
      this.pending.shift();
      return first;
    }
    if (first.length > n) {
      this.pending[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.pending[0]!;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.pending.shift();
      else this.pending[0] = c.subarray(k);
    }
    return out;
  }
}
