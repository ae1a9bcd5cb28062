import { constants as h2 } from "node:http2";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { encodeGrpcMessage, GrpcStatus } from "../http/grpc-status.js";
import { createMessageReader, type MessageReader } from "../http/message-reader.js";


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
  private readonly reader: MessageReader;
  private headersSent = false;
  private done = false;
  private onMessageCb: ((bytes: Buffer) => void) | undefined;
  /** Messages that arrived while nobody listened (between Hello and the tunnel taking over). */
  private queued: Buffer[] = [];
  private onCloseCb: (() => void) | undefined;

  constructor(
    private readonly req: Http2ServerRequest,
    private readonly res: Http2ServerResponse,
    maxMessageBytes: number,
  ) {
    this.reader = createMessageReader({
      maxBytes: maxMessageBytes,
      onMessage: (message) => {
        if (this.onMessageCb) this.onMessageCb(message);
        else this.queued.push(message);
      },
      onProblem: (p) => {
        this.finish(
          p.kind === "compressed" ? GrpcStatus.INTERNAL : GrpcStatus.RESOURCE_EXHAUSTED,
          p.kind === "compressed" ? "compressed messages are not accepted on the tunnel" : `message of ${p.length} bytes exceeds the limit of ${p.limit}`,
        );
        this.onCloseCb?.();
      },
    });
    req.on("data", (chunk: Buffer) => this.reader.push(chunk));
    // The peer went away (reset, connection lost) before we finished.
    res.once("close", () => {
      if (this.done) return;
      this.done = true;
      this.reader.stop();
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

  /** Writes one already-framed message, whole or in pieces (encodeFramesGathered: one writev); false means wait for drained(). */
  send(framed: Buffer | readonly Buffer[]): boolean {
    if (this.done) return true;
    this.sendHeaders();
    if (Buffer.isBuffer(framed)) return this.res.write(framed);
    const stream = this.req.stream;
    stream.cork();
    let more = true;
    for (const part of framed) more = this.res.write(part);
    stream.uncork();
    return more;
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
    this.reader.stop();
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
    this.reader.stop();
    this.req.stream.close(h2.NGHTTP2_CANCEL);
  }

  private sendHeaders(): void {
    if (this.headersSent) return;
    this.headersSent = true;
    this.res.writeHead(200, { "content-type": "application/grpc" });
  }
}
