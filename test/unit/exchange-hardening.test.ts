import { describe, expect, it } from "vitest";
import { type Frame, type Header, ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { createByteBudget } from "../../core/exchange/byte-budget.js";
import { type BodySink, Exchange, type ExchangeOptions, ExchangeReset } from "../../core/exchange/exchange.js";
import { newExchangeId } from "../../core/exchange/ids.js";
import { MAX_FRAME_SIZE } from "../../core/exchange/protocol.js";

// One end of an exchange fed by hand, as the ingress sees it: what its peer and its own consumer can do to it.

const WINDOW = 64 * 1024;

function ingress(extra: Partial<ExchangeOptions> = {}, upload = false) {
  const sent: Frame[] = [];
  const faults: string[] = [];
  const ex = new Exchange({
    id: newExchangeId(),
    send: (f) => sent.push(f),
    sendWindow: WINDOW,
    receiveWindow: WINDOW,
    maxFrameSize: 16 * 1024,
    onFault: (what) => faults.push(what),
    ...extra,
  });
  ex.sendRequestHead({
    $typeName: "ferry.tunnel.v1.RequestHead",
    target: "app",
    method: "GET",
    path: "/",
    query: "",
    headers: [],
    clientAddress: "",
    upgrade: false,
    // An upload still under way keeps our direction open after the answer is complete.
    endStream: !upload,
    responseWindow: WINDOW,
    authority: "",
  });
  const frame = (kind: Frame["kind"]): Frame => ({ $typeName: "ferry.tunnel.v1.Frame", exchangeId: ex.id, kind });
  const peer = {
    head: (endStream = false) => ex.receive(frame({ case: "responseHead", value: { $typeName: "ferry.tunnel.v1.ResponseHead", status: 200, headers: [], endStream } })),
    data: (n: number) => ex.receive(frame({ case: "data", value: { $typeName: "ferry.tunnel.v1.Data", chunk: new Uint8Array(n) } })),
    end: (trailers: Header[] = []) => ex.receive(frame({ case: "end", value: { $typeName: "ferry.tunnel.v1.End", trailers } })),
    reset: () => ex.receive(frame({ case: "reset", value: { $typeName: "ferry.tunnel.v1.Reset", code: ResetCode.TARGET_ERROR, message: "gone" } })),
  };
  const resets = () => sent.flatMap((f) => (f.kind.case === "reset" ? [f.kind.value] : []));
  return { ex, peer, sent, faults, resets };
}

/** A sink that records what it was told, pauses when asked, and throws where asked. */
function sink(opts: { throwIn?: "data" | "end" | "error"; pause?: boolean } = {}) {
  const seen = { bytes: 0, ended: false, errors: 0 };
  const s: BodySink = {
    data(chunk) {
      if (opts.throwIn === "data") throw new Error("the client's socket said no");
      seen.bytes += chunk.byteLength;
      return !opts.pause;
    },
    end() {
      seen.ended = true;
      if (opts.throwIn === "end") throw new TypeError('Invalid character in header content ["x-bad"]');
    },
    error() {
      seen.errors++;
      if (opts.throwIn === "error") throw new Error("and again");
    },
  };
  return { sink: s, seen };
}

describe("Exchange: nothing a consumer throws gets past its exchange", () => {
  it.each(["data", "end"] as const)("a sink whose %s() throws resets the exchange (INTERNAL) and hears error()", (throwIn) => {
    const { ex, peer, faults, resets } = ingress();
    const { sink: s, seen } = sink({ throwIn });
    ex.consume(s);
    peer.head();
    expect(() => {
      peer.data(100);
      peer.end([{ $typeName: "ferry.tunnel.v1.Header", name: "x-bad", value: "a\r\nb" }]);
    }).not.toThrow();
    expect(ex.isReset?.code).toBe(ResetCode.INTERNAL);
    expect(ex.isClosed).toBe(true);
    expect(seen.errors).toBe(1);
    expect(faults).toEqual(["the body's consumer threw"]);
    expect(resets()).toMatchObject([{ code: ResetCode.INTERNAL }]);
  });

  it("a sink whose error() throws too is told once, and the caller never sees it", () => {
    const { ex, peer } = ingress();
    const { sink: s, seen } = sink({ throwIn: "error" });
    ex.consume(s);
    peer.head();
    expect(() => peer.reset()).not.toThrow();
    expect(seen.errors).toBe(1);
  });

  it("onReset and onClose that throw do not reach the peer's frame", () => {
    const { ex, peer, faults } = ingress({
      onClose: () => {
        throw new Error("onClose");
      },
    });
    ex.onReset = () => {
      throw new Error("onReset");
    };
    peer.head();
    expect(() => peer.reset()).not.toThrow();
    expect(ex.isClosed).toBe(true);
    expect(faults).toEqual(["onReset threw", "onClose threw"]);
  });
});

describe("Exchange: what a peer may send", () => {
  it("a Data chunk larger than the protocol's frame limit is a protocol error, even within the window", () => {
    const { ex, peer, resets } = ingress({ receiveWindow: 4 * MAX_FRAME_SIZE });
    peer.head();
    peer.data(MAX_FRAME_SIZE + 1);
    expect(resets()).toMatchObject([{ code: ResetCode.PROTOCOL_ERROR, message: "protocol error: data chunk larger than the frame limit" }]);
    expect(ex.buffered).toBe(0);
  });

  it("a RequestHead sent back to the end that asked is a protocol error", () => {
    const { ex, resets } = ingress();
    ex.receive({ $typeName: "ferry.tunnel.v1.Frame", exchangeId: ex.id, kind: { case: "requestHead", value: { $typeName: "ferry.tunnel.v1.RequestHead", target: "", method: "", path: "", query: "", headers: [], clientAddress: "", upgrade: false, endStream: true, responseWindow: 0, authority: "" } } });
    expect(resets()).toMatchObject([{ code: ResetCode.PROTOCOL_ERROR }]);
  });
});

describe("Exchange: the shared byte budget", () => {
  it("takes what waits for the consumer and gives it back as the consumer takes it", () => {
    const budget = createByteBudget(1024 * 1024);
    const { ex, peer } = ingress({ budget });
    peer.head();
    peer.data(1000);
    peer.data(2000);
    expect(budget.used).toBe(3000);
    const { sink: s, seen } = sink();
    ex.consume(s);
    expect(seen.bytes).toBe(3000);
    expect(budget.used).toBe(0);
    // A consumer taking chunks as they come costs the budget nothing.
    peer.data(500);
    expect(budget.used).toBe(0);
  });

  it("resets the exchange (INTERNAL) when the budget is spent, and keeps nothing of it", () => {
    const budget = createByteBudget(10_000);
    const other = ingress({ budget });
    other.peer.head();
    other.peer.data(8000);
    const { ex, peer, resets } = ingress({ budget });
    peer.head();
    peer.data(1000);
    peer.data(2000);
    expect(ex.isReset?.code).toBe(ResetCode.INTERNAL);
    expect(resets()[0]?.message).toMatch(/buffer limit/);
    expect(budget.used).toBe(8000);
    other.ex.reset(ResetCode.CANCELLED, "client gone");
    expect(budget.used).toBe(0);
  });

  it("gives up a complete body it reset itself: the consumer hears error() and the budget comes back", () => {
    // The connector answered in full while the client's upload went on and the client read none of it; then
    // the client went away (our reset).
    const budget = createByteBudget(1 << 20);
    const { ex, peer } = ingress({ budget }, true);
    const { sink: s, seen } = sink({ pause: true });
    ex.consume(s);
    peer.head();
    for (let i = 0; i < 4; i++) peer.data(16 * 1024);
    peer.end();
    expect(budget.used).toBeGreaterThan(0);
    ex.reset(ResetCode.CANCELLED, "the client closed the connection");
    expect(seen.errors).toBe(1);
    expect(seen.ended).toBe(false);
    expect(budget.used).toBe(0);
    expect(ex.isClosed).toBe(true);
  });

  it("comes back to zero however exchanges end", () => {
    const budget = createByteBudget(64 * 1024 * 1024);
    const endings: Array<(x: ReturnType<typeof ingress>) => void> = [
      // the consumer reads everything
      ({ ex }) => ex.consume(sink().sink),
      // the peer resets mid-body
      ({ peer }) => peer.reset(),
      // we reset (the client went away)
      ({ ex }) => ex.reset(ResetCode.CANCELLED, "client gone"),
      // the consumer pauses, the body completes, the exchange closes, then the client goes away
      ({ ex, peer }) => {
        ex.consume(sink({ pause: true }).sink);
        peer.end();
        expect(ex.isClosed).toBe(true);
        ex.reset(ResetCode.CANCELLED, "client gone");
      },
      // a Readable consumer gives up
      ({ ex }) => ex.body.destroy(),
      // the consumer throws
      ({ ex }) => ex.consume(sink({ throwIn: "data" }).sink),
      // the tunnel dies
      ({ ex }) => ex.fail(new ExchangeReset(ResetCode.UNAVAILABLE, "tunnel closed", false)),
    ];
    for (let i = 0; i < 300; i++) {
      const x = ingress({ budget });
      x.peer.head();
      for (let k = 0; k < 1 + (i % 7); k++) x.peer.data(1 + ((i * 7919 + k * 104729) % 8000));
      endings[i % endings.length]!(x);
    }
    expect(budget.used).toBe(0);
  });
});
