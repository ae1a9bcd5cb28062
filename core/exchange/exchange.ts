import { Readable } from "node:stream";
import {
  type Frame,
  type Header,
  type RequestHead,
  type ResponseHead,
  ResetCode,
} from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import type { ByteBudget } from "./byte-budget.js";
import { ChunkQueue } from "./chunk-queue.js";
import { exchangeKey } from "./ids.js";
import { MAX_FRAME_SIZE, MAX_WINDOW } from "./protocol.js";

/** The reset message (INTERNAL) of an exchange whose ExchangeOptions.budget ran out; the budget's owner counts the refusal. */
const BUDGET_SPENT = "no room left to buffer the body (the buffer limit shared by the tenant's exchanges)";

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

/** A frame of exchange `id`. A literal, not create(): this is the hot path, and protobuf-es messages are plain objects. */
const frameOf = (id: Uint8Array, kind: Frame["kind"]): Frame => ({ $typeName: "ferry.tunnel.v1.Frame", exchangeId: id, kind });

/** The first frame of an exchange the requester sends: for a bus that carries it with the open (then requestHeadSent). */
export const requestHeadFrame = (id: Uint8Array, head: RequestHead): Frame => frameOf(id, { case: "requestHead", value: head });

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
  /**
   * Memory shared with other exchanges (a tenant's, on a relay node) that the
   * incoming body takes while it waits for its consumer: taken as Data is
   * queued, given back as it is handed on or dropped. When it runs out the
   * exchange is reset (INTERNAL) instead of queueing more.
   */
  budget?: ByteBudget;
  /**
   * A callback of ours (the body's consumer, onReset, onClose) threw. The
   * exchange has been reset (INTERNAL) and goes no further; this is for
   * counting and logging it. Never called for anything the peer did wrong.
   */
  onFault?(what: string, err: unknown): void;
}

/**
 * Where the incoming body goes, pushed as it arrives. `data` returns false to
 * pause delivery until resume(); credit goes back to the peer only for chunks
 * handed over, so a consumer that pauses holds the peer to its window. A sink
 * that throws resets its exchange (INTERNAL); if end() threw, error() follows.
 */
export interface BodySink {
  data(chunk: Uint8Array): boolean;
  /** The body is complete (with the peer's trailers). */
  end(trailers: Header[]): void;
  /** The exchange was reset before the body was complete. */
  error(reset: ExchangeReset): void;
}

type Head = RequestHead | ResponseHead;
type Waiter<T> = { resolve(v: T): void; reject(e: Error): void };

const EMPTY: Header[] = [];

/**
 * One end of an exchange: sends a head, a flow-controlled body and trailers,
 * and receives the peer's. Used by the ingress relay node (sends the request,
 * receives the response) and by the connector (the other way round).
 *
 * Flow control, per direction: the sender holds `credit` bytes and waits when
 * it runs out; the receiver queues at most the window it granted and returns
 * credit (WindowUpdate) only as its consumer takes the bytes. So one slow
 * consumer stalls only its own exchange, and memory per exchange is bounded by
 * the window.
 *
 * The incoming body is pushed to one consumer: a BodySink (consume()), or a
 * Readable made on first use of `body`. Nothing else is allocated per exchange
 * unless asked for: small exchanges are the common case on a relay.
 */
export class Exchange {
  readonly id: Uint8Array;
  readonly key: string;
  /** Called once if the exchange is reset from either side (e.g. to abort the target's request). */
  onReset: ((reset: ExchangeReset) => void) | undefined;

  private readonly opts: ExchangeOptions;
  private readable: Readable | undefined;
  private credit: number;
  private creditWaiter: Waiter<void> | undefined;
  private receiveCredit: number;
  private unacked = 0;
  private readonly queue = new ChunkQueue();
  private sink: BodySink | undefined;
  /** The sink was told error() (or must not be told anything more). */
  private sinkErrored = false;
  private paused = false;
  private delivering = false;
  private bodyDone = false;

  private headSent = false;
  private localEnded = false;
  private headReceived = false;
  private remoteEnded = false;
  private closed = false;
  private resetError: ExchangeReset | undefined;
  /** This end answers a request (it received the RequestHead). */
  private responder = false;
  /** This end asks (it sent the RequestHead). */
  private requester = false;
  /** The incoming body was given up while our answer goes on (see abandonBody). */
  private abandoned = false;

  private head: Head | undefined;
  private headWaiter: Waiter<Head> | undefined;
  private headPromise: Promise<Head> | undefined;
  private receivedTrailers: Header[] | undefined;
  private trailersPromise: Promise<Header[]> | undefined;
  private trailersWaiter: Waiter<Header[]> | undefined;

  constructor(opts: ExchangeOptions) {
    this.opts = opts;
    this.id = opts.id;
    this.key = exchangeKey(opts.id);
    this.credit = opts.sendWindow;
    this.receiveCredit = opts.receiveWindow;
  }

  /** The incoming body as a Readable (made on first use). Destroying it early gives the body up. */
  get body(): Readable {
    if (this.readable) return this.readable;
    const readable = new Readable({
      highWaterMark: this.opts.maxFrameSize,
      read: () => this.resume(),
      destroy: (err, cb) => {
        if (!this.bodyDone) this.abandonBody();
        cb(err);
      },
    });
    // A reset destroys the body with an error; readers see it through their own
    // iteration, and a body nobody reads must not crash the process.
    readable.on("error", () => {});
    this.readable = readable;
    this.consume({
      data: (chunk) => readable.push(chunk),
      end: () => readable.push(null),
      error: (reset) => readable.destroy(reset),
    });
    return readable;
  }

  /** Pushes the incoming body to `sink` from now on (once per exchange). */
  consume(sink: BodySink): void {
    if (this.sink) throw new Error("the body already has a consumer");
    this.sink = sink;
    if (this.resetError && !this.remoteEnded) {
      this.bodyDone = true;
      this.tellSinkError(this.resetError);
      return;
    }
    this.deliver();
  }

  /** Continues delivery after the sink's data() returned false. */
  resume(): void {
    this.paused = false;
    this.deliver();
  }

  /** The peer's head (ResponseHead at the ingress). Rejects with ExchangeReset. */
  get remoteHead(): Promise<Head> {
    if (!this.headPromise) {
      this.headPromise = this.head
        ? Promise.resolve(this.head)
        : this.resetError
          ? Promise.reject(this.resetError)
          : new Promise<Head>((resolve, reject) => (this.headWaiter = { resolve, reject }));
      this.headPromise.catch(() => {});
    }
    return this.headPromise;
  }

  /** The peer's trailers; resolves when its End arrives. */
  get trailers(): Promise<Header[]> {
    if (!this.trailersPromise) {
      this.trailersPromise = this.receivedTrailers
        ? Promise.resolve(this.receivedTrailers)
        : this.resetError
          ? Promise.reject(this.resetError)
          : new Promise<Header[]>((resolve, reject) => (this.trailersWaiter = { resolve, reject }));
      this.trailersPromise.catch(() => {});
    }
    return this.trailersPromise;
  }

  /** Body bytes received and not yet handed to the consumer: never more than the window we granted. */
  get buffered(): number {
    return this.queue.bytes;
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
    this.requester = true;
    this.sendHead({ case: "requestHead", value: head }, head.endStream);
  }

  /**
   * `head` (requestHeadFrame of this exchange's id) went out before the exchange existed: the bus sent it with the
   * open, so the exchange goes on as if sendRequestHead had sent it.
   */
  requestHeadSent(head: RequestHead): void {
    this.requester = true;
    this.sendHead(undefined, head.endStream);
  }

  sendResponseHead(head: ResponseHead): void {
    this.sendHead({ case: "responseHead", value: head }, head.endStream);
  }

  /**
   * Sends `chunk` now if credit and transport allow all of it, and says so;
   * false means nothing was sent and the caller should await write(). Spares a
   * promise per chunk when nothing needs waiting.
   */
  writeNow(chunk: Uint8Array): boolean {
    if (this.resetError || this.localEnded) return false;
    if (chunk.byteLength > this.credit || chunk.byteLength > this.opts.maxFrameSize) return false;
    if (this.opts.transportReady?.()) return false;
    if (chunk.byteLength === 0) return true;
    this.credit -= chunk.byteLength;
    this.emit({ case: "data", value: { $typeName: "ferry.tunnel.v1.Data", chunk } });
    return true;
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
  end(trailers: Header[] = EMPTY): void {
    if (this.localEnded || this.resetError) return;
    this.emit({ case: "end", value: { $typeName: "ferry.tunnel.v1.End", trailers } });
    this.localDone();
  }

  /** Aborts the exchange in both directions and tells the peer why. */
  reset(code: ResetCode, message: string): void {
    if (this.closed) return this.dropUnread(new ExchangeReset(code, message, false));
    if (this.resetError) return;
    this.emit({ case: "reset", value: { $typeName: "ferry.tunnel.v1.Reset", code, message } });
    this.fail(new ExchangeReset(code, message, false));
  }

  /** Fails the exchange locally without telling the peer (the path to it is gone). */
  fail(error: ExchangeReset): void {
    if (this.closed) return this.dropUnread(error);
    if (this.resetError) return;
    this.resetError = error;
    this.headWaiter?.reject(error);
    this.headWaiter = undefined;
    this.trailersWaiter?.reject(error);
    this.trailersWaiter = undefined;
    this.creditWaiter?.reject(error);
    this.creditWaiter = undefined;
    // A body that arrived complete before the peer's Reset (an early answer
    // followed by "stop sending") is still delivered; only our sending stops.
    // Our own reset gives it up: whoever reset will not read it, and its bytes
    // (and budget) must not wait for a reader that never comes.
    if (!this.remoteEnded || !error.remote) {
      this.dropQueue();
      if (this.sink && !this.bodyDone) {
        this.bodyDone = true;
        this.tellSinkError(error);
      }
    }
    if (this.onReset) {
      try {
        this.onReset(error);
      } catch (err) {
        this.opts.onFault?.("onReset threw", err);
      }
    }
    this.finish();
  }

  /**
   * Feeds a frame from the peer. Never throws: protocol violations reset the
   * exchange (PROTOCOL_ERROR), and so does a consumer of ours that throws
   * (INTERNAL); nothing reaches other exchanges or the caller.
   */
  receive(frame: Frame): void {
    if (this.closed) return;
    const kind = frame.kind;
    switch (kind.case) {
      case "requestHead":
        // A RequestHead goes to the end that answers, a ResponseHead to the end that asked.
        if (this.headReceived || this.requester) return this.violation("unexpected request head");
        this.onHead(kind.value);
        return;
      case "responseHead":
        if (this.headReceived || !this.requester) return this.violation("unexpected response head");
        this.onHead(kind.value);
        return;
      case "data": {
        if (!this.headReceived || this.remoteEnded) return this.violation("data outside the body");
        const chunk = kind.value.chunk;
        const n = chunk.byteLength;
        if (n > this.receiveCredit) return this.violation("flow-control window exceeded");
        // Bigger chunks are never sent (both ends split at MAX_FRAME_SIZE); the limit bounds what a view keeps alive.
        if (n > MAX_FRAME_SIZE) return this.violation("data chunk larger than the frame limit");
        this.receiveCredit -= n;
        // Abandoned: nobody reads it, and no credit goes back, so the peer stops soon.
        if (this.abandoned || this.bodyDone || n === 0) return;
        // The common case: a consumer ready for it takes it at once, nothing is queued.
        if (this.sink && !this.paused && !this.delivering && this.queue.empty) return this.deliver(chunk);
        if (this.opts.budget && !this.opts.budget.take(n)) {
          return this.reset(ResetCode.INTERNAL, BUDGET_SPENT);
        }
        this.queue.push(chunk);
        // Re-entered from inside the consumer (or no consumer yet): the running delivery, or consume(), takes it.
        return;
      }
      case "end":
        if (!this.headReceived || this.remoteEnded) return this.violation("end outside the body");
        this.remoteDone(kind.value.trailers);
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

  /** `kind` undefined: the head went out already (requestHeadSent). */
  private sendHead(kind: Frame["kind"] | undefined, endStream: boolean): void {
    if (this.headSent) throw new Error("head already sent");
    this.headSent = true;
    if (kind) this.emit(kind);
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
    this.head = head;
    this.headWaiter?.resolve(head);
    this.headWaiter = undefined;
    if (head.endStream) this.remoteDone(EMPTY);
  }

  private remoteDone(trailers: Header[]): void {
    this.remoteEnded = true;
    this.receivedTrailers = trailers;
    this.trailersWaiter?.resolve(trailers);
    this.trailersWaiter = undefined;
    this.deliver();
    this.maybeClose();
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
    this.bodyDone = true;
    if (this.responder && !this.localEnded) {
      this.abandoned = true;
      this.dropQueue();
      return;
    }
    this.reset(ResetCode.CANCELLED, "the receiver stopped reading the body");
  }

  private violation(what: string): void {
    this.reset(ResetCode.PROTOCOL_ERROR, `protocol error: ${what}`);
  }

  /**
   * Hands `first` (a chunk just received, when nothing is queued) and then the
   * queued chunks to the sink as fast as it takes them, returning credit.
   */
  private deliver(first?: Uint8Array): void {
    const sink = this.sink;
    if (!sink || this.delivering || this.bodyDone) return;
    this.delivering = true;
    // One try around the whole loop: a throwing sink ends only its own exchange, and the loop stays optimisable.
    try {
      if (first) {
        this.unacked += first.byteLength;
        this.paused = !sink.data(first);
        if (this.bodyDone) return;
      }
      while (!this.paused) {
        const chunk = this.queue.shift();
        if (!chunk) break;
        this.opts.budget?.give(chunk.byteLength);
        this.unacked += chunk.byteLength;
        this.paused = !sink.data(chunk);
        if (this.bodyDone) return; // the sink gave up inside data()
      }
      if (this.queue.empty && this.remoteEnded) {
        this.bodyDone = true;
        sink.end(this.receivedTrailers ?? EMPTY);
        return;
      }
      // Batch credit: one WindowUpdate per quarter window keeps the overhead
      // small while the sender never idles for lack of credit.
      if (!this.remoteEnded && this.unacked >= this.opts.receiveWindow / 4) {
        const increment = this.unacked;
        this.unacked = 0;
        this.receiveCredit += increment;
        this.emit({ case: "windowUpdate", value: { $typeName: "ferry.tunnel.v1.WindowUpdate", increment } });
      }
    } catch (err) {
      this.sinkThrew(err);
    } finally {
      this.delivering = false;
    }
  }

  /** The body's consumer threw: this exchange cannot go on, and nothing else may notice. */
  private sinkThrew(err: unknown): void {
    this.opts.onFault?.("the body's consumer threw", err);
    this.bodyDone = true;
    this.dropQueue();
    const message = "the receiving end failed to take the body";
    this.reset(ResetCode.INTERNAL, message);
    // The sink hears of it whichever callback threw (after end(), the reset alone would not tell it).
    this.tellSinkError(this.resetError ?? new ExchangeReset(ResetCode.INTERNAL, message, false));
  }

  /** Tells the sink the body will not complete; once, and a sink that throws again is not asked twice. */
  private tellSinkError(reset: ExchangeReset): void {
    const sink = this.sink;
    if (!sink || this.sinkErrored) return;
    this.sinkErrored = true;
    try {
      sink.error(reset);
    } catch (err) {
      this.opts.onFault?.("the body's consumer threw", err);
    }
  }

  /** Drops what is queued for the consumer, giving its bytes back to the budget. */
  private dropQueue(): void {
    const dropped = this.queue.clear();
    if (dropped > 0) this.opts.budget?.give(dropped);
  }

  /**
   * The exchange is over in both directions but its consumer gave up before
   * taking the whole body (a client that went away): drop the rest, so the
   * bytes and their budget do not wait for a reader that never comes.
   */
  private dropUnread(reset: ExchangeReset): void {
    this.dropQueue();
    if (this.bodyDone) return;
    this.bodyDone = true;
    this.tellSinkError(reset);
  }

  private emit(kind: Frame["kind"]): void {
    this.opts.send(frameOf(this.id, kind));
  }

  private maybeClose(): void {
    if (this.localEnded && this.remoteEnded) this.finish();
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.opts.onClose?.(this);
    } catch (err) {
      this.opts.onFault?.("onClose threw", err);
    }
  }
}
