import { Readable } from "node:stream";
import {
  type Frame,
  type Header,
  type RequestHead,
  type ResponseHead,
  ResetCode,
} from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { exchangeKey } from "./ids.js";
import { MAX_WINDOW } from "./protocol.js";

/** Why an exchange ended early; `remote` tells whether the peer sent the Reset. */
export class ExchangeReset extends Error {
  constructor(
    readonly code: ResetCode,
    message: string,
    readonly remote: boolean,
  ) {
    super(message);
    this.name = "ExchangeReset";
  }
}

export interface ExchangeOptions {
  id: Uint8Array;
  /** Puts a frame on the wire (tunnel or bus); must not block. */
  send(frame: Frame): void;
  /** Credit the peer granted for our outgoing body. */
  sendWindow: number;
  /** Credit we grant the peer for the incoming body. */
  receiveWindow: number;
  /** Largest Data chunk we send. */
  maxFrameSize: number;
  /** Transport back-pressure: a promise to await before sending more body, or undefined to go on. */
  transportReady?(): Promise<void> | undefined;
  /** Called once when the exchange is finished in both directions or reset. */
  onClose?(exchange: Exchange): void;
}

type Head = RequestHead | ResponseHead;

/**
 * One end of an exchange: sends a head, a flow-controlled body and trailers,
 * and receives the peer's. Used by the ingress relay node (sends the request,
 * receives the response) and by the connector (the other way round).
 *
 * Flow control, per direction: the sender holds `credit` bytes and waits when
 * it runs out; the receiver queues at most the window it granted and returns
 * credit (WindowUpdate) only as its consumer reads. So one slow consumer stalls
 * only its own exchange, and memory per exchange is bounded by the window.
 */
export class Exchange {
  readonly id: Uint8Array;
  readonly key: string;
  /** The incoming body. Destroying it early resets the exchange. */
  readonly body: Readable;

  private readonly opts: ExchangeOptions;
  /** Made on first use: only the connector (undici's signal) needs one. */
  private abort: AbortController | undefined;
  private credit: number;
  private creditWaiter: { resolve(): void; reject(e: Error): void } | undefined;
  private receiveCredit: number;
  private unacked = 0;
  private readonly queue: Uint8Array[] = [];
  private wanted = false;
  private pumping = false;
  private eofPushed = false;
  /** This end answers a request (it received the RequestHead). */
  private responder = false;
  /** The incoming body was given up while our answer goes on (see abandonBody). */
  private abandoned = false;

  private headSent = false;
  private localEnded = false;
  private headReceived = false;
  private remoteEnded = false;
  private closed = false;
  private resetError: ExchangeReset | undefined;

  private readonly headDeferred = deferred<Head>();
  private readonly trailersDeferred = deferred<Header[]>();

  constructor(opts: ExchangeOptions) {
    this.opts = opts;
    this.id = opts.id;
    this.key = exchangeKey(opts.id);
    this.credit = opts.sendWindow;
    this.receiveCredit = opts.receiveWindow;
    this.body = new Readable({
      highWaterMark: opts.maxFrameSize,
      read: () => {
        this.wanted = true;
        this.pump();
      },
      destroy: (err, cb) => {
        if (!this.eofPushed) this.abandonBody();
        cb(err);
      },
    });
    // A reset destroys the body with an error; readers see it through their own
    // iteration, and a body nobody reads must not crash the process.
    this.body.on("error", () => {});
    // Rejections are observed through these promises by whoever cares; never unhandled.
    this.headDeferred.promise.catch(() => {});
    this.trailersDeferred.promise.catch(() => {});
  }

  /** Aborts when the exchange is reset from either side. */
  get signal(): AbortSignal {
    if (!this.abort) {
      this.abort = new AbortController();
      if (this.resetError) this.abort.abort(this.resetError);
    }
    return this.abort.signal;
  }

  /** The peer's head (ResponseHead at the ingress). Rejects with ExchangeReset. */
  get remoteHead(): Promise<Head> {
    return this.headDeferred.promise;
  }

  /** The peer's trailers; resolves when its End arrives. */
  get trailers(): Promise<Header[]> {
    return this.trailersDeferred.promise;
  }

  get isReset(): ExchangeReset | undefined {
    return this.resetError;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Marks the peer's head as already received (the connector is created from a RequestHead). */
  acceptHead(head: RequestHead): void {
    this.onHead(head);
  }

  sendRequestHead(head: RequestHead): void {
    this.sendHead({ case: "requestHead", value: head }, head.endStream);
  }

  sendResponseHead(head: ResponseHead): void {
    this.sendHead({ case: "responseHead", value: head }, head.endStream);
  }

  /** Sends body bytes, waiting for credit as needed. Rejects with ExchangeReset. */
  async write(chunk: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < chunk.byteLength) {
      if (this.resetError) throw this.resetError;
      if (this.localEnded) throw new Error("write after end");
      if (this.credit <= 0) {
        await new Promise<void>((resolve, reject) => (this.creditWaiter = { resolve, reject }));
        continue;
      }
      const congested = this.opts.transportReady?.();
      if (congested) {
        await congested;
        continue;
      }
      const n = Math.min(this.credit, this.opts.maxFrameSize, chunk.byteLength - offset);
      this.credit -= n;
      this.emit({ case: "data", value: { $typeName: "ferry.tunnel.v1.Data", chunk: chunk.subarray(offset, offset + n) } });
      offset += n;
    }
  }

  /** Ends our direction, with optional trailers. */
  end(trailers: Header[] = []): void {
    if (this.localEnded || this.resetError) return;
    this.emit({ case: "end", value: { $typeName: "ferry.tunnel.v1.End", trailers } });
    this.localDone();
  }

  /** Aborts the exchange in both directions and tells the peer why. */
  reset(code: ResetCode, message: string): void {
    if (this.resetError || this.closed) return;
    this.emit({ case: "reset", value: { $typeName: "ferry.tunnel.v1.Reset", code, message } });
    this.fail(new ExchangeReset(code, message, false));
  }

  /** Fails the exchange locally without telling the peer (the path to it is gone). */
  fail(error: ExchangeReset): void {
    if (this.resetError || this.closed) return;
    this.resetError = error;
    this.headDeferred.reject(error);
    this.trailersDeferred.reject(error);
    this.creditWaiter?.reject(error);
    this.creditWaiter = undefined;
    // A body that arrived complete (End before the Reset, e.g. an early answer
    // followed by "stop sending") is still delivered; only our sending stops.
    if (!this.remoteEnded) {
      this.queue.length = 0;
      if (!this.eofPushed) {
        this.eofPushed = true;
        this.body.destroy(error);
      }
    }
    this.abort?.abort(error);
    this.finish();
  }

  /** Feeds a frame from the peer. Protocol violations reset the exchange, never throw. */
  receive(frame: Frame): void {
    if (this.closed) return;
    const kind = frame.kind;
    switch (kind.case) {
      case "requestHead":
      case "responseHead":
        if (this.headReceived) return this.violation("second head");
        this.onHead(kind.value);
        return;
      case "data": {
        if (!this.headReceived || this.remoteEnded) return this.violation("data outside the body");
        const chunk = kind.value.chunk;
        if (chunk.byteLength > this.receiveCredit) return this.violation("flow-control window exceeded");
        this.receiveCredit -= chunk.byteLength;
        if (this.abandoned) return; // nobody reads it; no credit goes back, so the peer stops soon
        this.queue.push(chunk);
        this.pump();
        return;
      }
      case "end":
        if (!this.headReceived || this.remoteEnded) return this.violation("end outside the body");
        this.remoteEnded = true;
        this.trailersDeferred.resolve(kind.value.trailers);
        this.pump();
        this.maybeClose();
        return;
      case "reset":
        this.fail(new ExchangeReset(kind.value.code, kind.value.message || "reset by peer", true));
        return;
      case "windowUpdate": {
        const inc = kind.value.increment;
        // A peer may not grant more than MAX_WINDOW outstanding: unbounded credit would let
        // a hostile receiver make us queue a whole body in memory.
        if (inc === 0 || this.credit + inc > MAX_WINDOW) return this.violation("bad window update");
        this.credit += inc;
        const waiter = this.creditWaiter;
        this.creditWaiter = undefined;
        waiter?.resolve();
        return;
      }
      default:
        return this.violation("empty frame");
    }
  }

  private sendHead(kind: Frame["kind"], endStream: boolean): void {
    if (this.headSent) throw new Error("head already sent");
    this.headSent = true;
    this.emit(kind);
    if (endStream) this.localDone();
  }

  /** Our direction is complete; if we gave up on the peer's body, tell it to stop sending. */
  private localDone(): void {
    this.localEnded = true;
    if (this.abandoned && !this.remoteEnded) {
      this.reset(ResetCode.CANCELLED, "the response is complete; the rest of the request body was not read");
      return;
    }
    this.maybeClose();
  }

  private onHead(head: Head): void {
    this.headReceived = true;
    this.responder = head.$typeName === "ferry.tunnel.v1.RequestHead";
    this.headDeferred.resolve(head);
    if (head.endStream) {
      this.remoteEnded = true;
      this.trailersDeferred.resolve([]);
      this.pump();
      this.maybeClose();
    }
  }

  /**
   * The consumer gave up on a body that was still coming. On the requesting
   * side the peer must stop too (reset). On the answering side the answer may
   * still come: a target may respond before reading the whole request (401,
   * 413) and close, and its HTTP client drops the request body even before the
   * response is handed over. So the answer goes on, and the peer is told to
   * stop sending once it is complete (or the answer fails and resets anyway).
   */
  private abandonBody(): void {
    if (this.responder && !this.localEnded) {
      this.abandoned = true;
      this.queue.length = 0;
      return;
    }
    this.reset(ResetCode.CANCELLED, "the receiver stopped reading the body");
  }

  private violation(what: string): void {
    this.reset(ResetCode.PROTOCOL_ERROR, `protocol error: ${what}`);
  }

  /** Moves queued chunks into the body as fast as its consumer reads, returning credit. */
  private pump(): void {
    if (this.pumping || this.eofPushed) return;
    this.pumping = true;
    try {
      while (this.wanted && this.queue.length > 0) {
        const chunk = this.queue.shift()!;
        this.unacked += chunk.byteLength;
        this.wanted = this.body.push(chunk);
      }
      if (this.queue.length === 0 && this.remoteEnded && !this.eofPushed) {
        this.eofPushed = true;
        this.body.push(null);
      }
      // Batch credit: one WindowUpdate per quarter window keeps the overhead
      // small while the sender never idles for lack of credit.
      if (!this.remoteEnded && this.unacked >= this.opts.receiveWindow / 4) {
        const increment = this.unacked;
        this.unacked = 0;
        this.receiveCredit += increment;
        this.emit({ case: "windowUpdate", value: { $typeName: "ferry.tunnel.v1.WindowUpdate", increment } });
      }
    } finally {
      this.pumping = false;
    }
  }

  private emit(kind: Frame["kind"]): void {
    // A literal, not create(): this is the hot path, and protobuf-es messages are plain objects.
    this.opts.send({ $typeName: "ferry.tunnel.v1.Frame", exchangeId: this.id, kind });
  }

  private maybeClose(): void {
    if (this.localEnded && this.remoteEnded) this.finish();
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.opts.onClose?.(this);
  }
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: Error): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
