import { create } from "@bufbuild/protobuf";
import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  DataSchema,
  EndSchema,
  type Frame,
  FrameSchema,
  HeaderSchema,
  RequestHeadSchema,
  ResetCode,
  ResponseHeadSchema,
  WindowUpdateSchema,
} from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { Exchange, ExchangeReset } from "../../core/exchange/exchange.js";
import { exchangeKey, newExchangeId } from "../../core/exchange/ids.js";
import { MAX_WINDOW } from "../../core/exchange/protocol.js";

type Side = "a" | "b";

/**
 * An in-memory tunnel: one FIFO shared by every exchange on it, delivered on
 * microtasks like an async transport. Side "a" is the ingress, "b" the connector.
 */
class Wire {
  readonly ends = { a: new Map<string, Exchange>(), b: new Map<string, Exchange>() };
  readonly sent: Array<{ from: Side; frame: Frame }> = [];
  onSend?: (from: Side, frame: Frame) => void;
  onDeliver?: (to: Side, frame: Frame) => void;

  sender(from: Side): (frame: Frame) => void {
    return (frame) => {
      this.sent.push({ from, frame });
      this.onSend?.(from, frame);
      const to: Side = from === "a" ? "b" : "a";
      queueMicrotask(() => {
        this.onDeliver?.(to, frame);
        this.ends[to].get(exchangeKey(frame.exchangeId))?.receive(frame);
      });
    };
  }

  framesFrom(from: Side, id?: Uint8Array): Frame[] {
    return this.sent
      .filter((s) => s.from === from && (id === undefined || exchangeKey(s.frame.exchangeId) === exchangeKey(id)))
      .map((s) => s.frame);
  }
}

interface PairOptions {
  window?: number;
  maxFrameSize?: number;
}

function pair(wire = new Wire(), opts: PairOptions = {}) {
  const window = opts.window ?? 64 * 1024;
  const maxFrameSize = opts.maxFrameSize ?? 16 * 1024;
  const id = newExchangeId();
  const closes = { a: 0, b: 0 };
  const common = { id, sendWindow: window, receiveWindow: window, maxFrameSize };
  const a = new Exchange({ ...common, send: wire.sender("a"), onClose: () => closes.a++ });
  const b = new Exchange({ ...common, send: wire.sender("b"), onClose: () => closes.b++ });
  wire.ends.a.set(a.key, a);
  wire.ends.b.set(b.key, b);
  return { wire, a, b, closes, id };
}

function requestHead(endStream = false) {
  return create(RequestHeadSchema, { target: "app", method: "POST", path: "/upload", query: "x=1", endStream });
}

function responseHead(status = 200, endStream = false) {
  return create(ResponseHeadSchema, { status, endStream, headers: [create(HeaderSchema, { name: "content-type", value: "text/plain" })] });
}

/** Lets queued microtasks and I/O-phase callbacks run; no timers involved. */
async function turns(n = 10): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

function track(p: Promise<unknown>) {
  const state = { settled: false, error: undefined as unknown };
  p.then(
    () => (state.settled = true),
    (e: unknown) => {
      state.settled = true;
      state.error = e;
    },
  );
  return state;
}

/** Deterministic PRNG (mulberry32) so failures reproduce. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function readAll(body: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of body) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

function frame(id: Uint8Array, kind: Frame["kind"]): Frame {
  return create(FrameSchema, { exchangeId: id, kind });
}

function resetsIn(frames: Frame[]) {
  return frames.flatMap((f) => (f.kind.case === "reset" ? [f.kind.value] : []));
}

describe("Exchange over an in-memory wire", () => {
  it("delivers the request head and the response head", async () => {
    const { a, b } = pair();
    a.sendRequestHead(requestHead());
    const req = await b.remoteHead;
    expect(req).toMatchObject({ target: "app", method: "POST", path: "/upload", query: "x=1", endStream: false });
    b.sendResponseHead(responseHead(201));
    const res = await a.remoteHead;
    expect(res).toMatchObject({ status: 201, endStream: false });
    expect((res as { headers: Array<{ name: string; value: string }> }).headers.map((h) => [h.name, h.value])).toEqual([
      ["content-type", "text/plain"],
    ]);
  });

  it("every frame carries the exchange id", async () => {
    const { wire, a, b, id } = pair();
    a.sendRequestHead(requestHead());
    await a.write(new Uint8Array(100));
    a.end();
    b.sendResponseHead(responseHead(200, true));
    await turns();
    expect(wire.sent.length).toBeGreaterThanOrEqual(4);
    for (const { frame } of wire.sent) expect(exchangeKey(frame.exchangeId)).toBe(exchangeKey(id));
  });

  it("moves 5 MB written in random-sized chunks intact and in order, never exceeding the window", async () => {
    const window = 256 * 1024;
    const { wire, a, b } = pair(new Wire(), { window, maxFrameSize: 16 * 1024 });
    // Flow-control books, from the writer's point of view: bytes it sent minus
    // credit it has actually received back.
    let sentData = 0;
    let granted = 0;
    let maxInFlight = 0;
    wire.onSend = (from, f) => {
      if (from === "a" && f.kind.case === "data") {
        sentData += f.kind.value.chunk.byteLength;
        maxInFlight = Math.max(maxInFlight, sentData - granted);
      }
    };
    wire.onDeliver = (to, f) => {
      if (to === "a" && f.kind.case === "windowUpdate") granted += f.kind.value.increment;
    };

    const payload = randomBytes(5 * 1024 * 1024);
    const random = prng(42);
    a.sendRequestHead(requestHead());
    const received = (async () => {
      await b.remoteHead;
      return readAll(b.body);
    })();
    let offset = 0;
    let writes = 0;
    while (offset < payload.length) {
      const n = Math.min(payload.length - offset, 1 + Math.floor(random() * 100_000));
      await a.write(payload.subarray(offset, offset + n));
      offset += n;
      writes++;
    }
    a.end();
    const body = await received;

    expect(writes).toBeGreaterThan(50);
    expect(body.length).toBe(payload.length);
    expect(createHash("sha256").update(body).digest("hex")).toBe(createHash("sha256").update(payload).digest("hex"));
    expect(sentData).toBe(payload.length);
    expect(maxInFlight).toBeGreaterThan(0);
    expect(maxInFlight).toBeLessThanOrEqual(window);
    // Credit did come back, in increments no larger than the window.
    const updates = wire.framesFrom("b").flatMap((f) => (f.kind.case === "windowUpdate" ? [f.kind.value.increment] : []));
    expect(updates.length).toBeGreaterThan(0);
    for (const inc of updates) expect(inc).toBeLessThanOrEqual(window);
  });

  it("splits writes larger than maxFrameSize into frames no larger than it", async () => {
    const { wire, a, b } = pair(new Wire(), { window: 64 * 1024, maxFrameSize: 1000 });
    a.sendRequestHead(requestHead());
    await a.write(randomBytes(10_500));
    const sizes = wire.framesFrom("a").flatMap((f) => (f.kind.case === "data" ? [f.kind.value.chunk.byteLength] : []));
    expect(sizes).toHaveLength(11);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(1000);
    expect(sizes.reduce((s, n) => s + n, 0)).toBe(10_500);
    b.body.resume();
  });

  it("returns credit only as the consumer reads, and a write past the window waits for it", async () => {
    const window = 64 * 1024;
    const { wire, a, b } = pair(new Wire(), { window, maxFrameSize: 16 * 1024 });
    a.sendRequestHead(requestHead());
    await a.write(new Uint8Array(window)); // exactly the window: completes without credit back
    const blocked = track(a.write(new Uint8Array(1000)));
    await turns();

    const updates = () => wire.framesFrom("b").filter((f) => f.kind.case === "windowUpdate");
    expect(updates()).toHaveLength(0);
    expect(blocked.settled).toBe(false);
    const sentBeforeRead = wire.framesFrom("a").filter((f) => f.kind.case === "data").length;

    let read = 0;
    b.body.on("data", (c: Buffer) => (read += c.length));
    await turns();
    expect(updates().length).toBeGreaterThan(0);
    expect(blocked.settled).toBe(true);
    expect(blocked.error).toBeUndefined();
    expect(wire.framesFrom("a").filter((f) => f.kind.case === "data").length).toBe(sentBeforeRead + 1);
    expect(read).toBe(window + 1000);
  });

  it("a consumer that never reads stalls only its own exchange's writer", async () => {
    const wire = new Wire();
    const stalled = pair(wire, { window: 32 * 1024, maxFrameSize: 8 * 1024 });
    const healthy = pair(wire, { window: 32 * 1024, maxFrameSize: 8 * 1024 });
    stalled.a.sendRequestHead(requestHead());
    healthy.a.sendRequestHead(requestHead());

    await stalled.a.write(new Uint8Array(32 * 1024));
    const stuck = track(stalled.a.write(new Uint8Array(1)));

    const payload = randomBytes(1024 * 1024);
    const got = readAll(healthy.b.body);
    for (let i = 0; i < payload.length; i += 50_000) await healthy.a.write(payload.subarray(i, i + 50_000));
    healthy.a.end();
    expect((await got).equals(payload)).toBe(true);

    await turns();
    expect(stuck.settled).toBe(false);
    expect(stalled.wire.framesFrom("b", stalled.id).filter((f) => f.kind.case === "windowUpdate")).toHaveLength(0);
    stalled.a.reset(ResetCode.CANCELLED, "test over");
    await turns();
    expect(stuck.error).toBeInstanceOf(ExchangeReset);
  });

  it("a write waits while transportReady() returns a promise, and sends nothing meanwhile", async () => {
    const sent: Frame[] = [];
    let release: (() => void) | undefined;
    let congested = true;
    const x = new Exchange({
      id: newExchangeId(),
      send: (f) => sent.push(f),
      sendWindow: 1 << 20,
      receiveWindow: 1 << 20,
      maxFrameSize: 1000,
      transportReady: () => (congested ? new Promise<void>((resolve) => (release = resolve)) : undefined),
    });
    x.sendRequestHead(requestHead());
    const writing = track(x.write(new Uint8Array(2500)));
    await turns();
    expect(writing.settled).toBe(false);
    expect(sent.filter((f) => f.kind.case === "data")).toHaveLength(0);
    congested = false;
    release!();
    await turns();
    expect(writing.settled).toBe(true);
    expect(writing.error).toBeUndefined();
    expect(sent.flatMap((f) => (f.kind.case === "data" ? [f.kind.value.chunk.byteLength] : []))).toEqual([1000, 1000, 500]);
  });

  it("onReset is called once on both sides with the reset", async () => {
    const { a, b } = pair();
    const seen: { a: unknown[]; b: unknown[] } = { a: [], b: [] };
    a.onReset = (r) => seen.a.push(r);
    b.onReset = (r) => seen.b.push(r);
    a.sendRequestHead(requestHead());
    a.reset(ResetCode.CANCELLED, "gone");
    a.reset(ResetCode.INTERNAL, "again");
    await turns();
    expect(seen.a).toEqual([expect.objectContaining({ code: ResetCode.CANCELLED, remote: false })]);
    expect(seen.b).toEqual([expect.objectContaining({ code: ResetCode.CANCELLED, remote: true })]);
  });

  it("end() with trailers resolves the peer's trailers and ends its body", async () => {
    const { a, b } = pair();
    a.sendRequestHead(requestHead());
    await a.write(Buffer.from("hello"));
    const trailers = [create(HeaderSchema, { name: "grpc-status", value: "0" }), create(HeaderSchema, { name: "x-sum", value: "abc" })];
    a.end(trailers);
    const body = await readAll(b.body);
    expect(body.toString()).toBe("hello");
    expect((await b.trailers).map((h) => [h.name, h.value])).toEqual([
      ["grpc-status", "0"],
      ["x-sum", "abc"],
    ]);
  });

  it("end() without trailers resolves the peer's trailers with an empty list", async () => {
    const { a, b } = pair();
    a.sendRequestHead(requestHead());
    a.end();
    await expect(b.trailers).resolves.toEqual([]);
  });

  it("heads with endStream close the exchange without a body or End frame", async () => {
    const { wire, a, b, closes } = pair();
    a.sendRequestHead(requestHead(true));
    await turns();
    expect(a.isClosed).toBe(false);
    expect(await b.trailers).toEqual([]);
    expect((await readAll(b.body)).length).toBe(0);
    await expect(a.write(new Uint8Array(1))).rejects.toThrow("write after end");

    b.sendResponseHead(responseHead(204, true));
    expect(b.isClosed).toBe(true);
    await turns();
    expect(a.isClosed).toBe(true);
    expect(closes).toEqual({ a: 1, b: 1 });
    expect(await a.trailers).toEqual([]);
    expect(wire.sent.map((s) => s.frame.kind.case)).toEqual(["requestHead", "responseHead"]);
  });

  it("reset() propagates: the peer's head, trailers and body all fail with the code, marked remote", async () => {
    const { a, b, closes } = pair();
    a.sendRequestHead(requestHead());
    await b.remoteHead;
    b.reset(ResetCode.TARGET_UNREACHABLE, "connection refused");
    expect(b.isReset).toMatchObject({ code: ResetCode.TARGET_UNREACHABLE, remote: false });

    const head = await a.remoteHead.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(head).toBeInstanceOf(ExchangeReset);
    expect(head).toMatchObject({ code: ResetCode.TARGET_UNREACHABLE, remote: true, message: "connection refused" });
    await expect(a.trailers).rejects.toBeInstanceOf(ExchangeReset);
    await expect(readAll(a.body)).rejects.toMatchObject({ name: "ExchangeReset", code: ResetCode.TARGET_UNREACHABLE, remote: true });
    expect(a.isReset).toBeInstanceOf(ExchangeReset);
    expect(a.isReset?.remote).toBe(true);
    expect(closes).toEqual({ a: 1, b: 1 });
  });

  it("a reset wakes a writer waiting for credit with the ExchangeReset", async () => {
    const { a, b } = pair(new Wire(), { window: 16 * 1024, maxFrameSize: 16 * 1024 });
    a.sendRequestHead(requestHead());
    await a.write(new Uint8Array(16 * 1024));
    const waiting = a.write(new Uint8Array(10));
    b.reset(ResetCode.DEADLINE_EXCEEDED, "too slow");
    await expect(waiting).rejects.toMatchObject({ code: ResetCode.DEADLINE_EXCEEDED, remote: true });
    await expect(a.write(new Uint8Array(1))).rejects.toBeInstanceOf(ExchangeReset);
  });

  it("the requester destroying the response body early resets the exchange with CANCELLED", async () => {
    const { wire, a, b, closes } = pair(new Wire(), { window: 64 * 1024, maxFrameSize: 16 * 1024 });
    a.sendRequestHead(requestHead());
    a.end();
    await turns();
    b.sendResponseHead(responseHead());
    await b.write(new Uint8Array(64 * 1024));
    const pending = b.write(new Uint8Array(64 * 1024));
    for await (const _chunk of a.body) break; // stop reading mid-body
    const resets = resetsIn(wire.framesFrom("a"));
    expect(resets).toHaveLength(1);
    expect(resets[0]!.code).toBe(ResetCode.CANCELLED);
    expect(a.isReset).toMatchObject({ code: ResetCode.CANCELLED, remote: false });
    await expect(pending).rejects.toMatchObject({ code: ResetCode.CANCELLED, remote: true });
    expect(closes).toEqual({ a: 1, b: 1 });
  });

  it("the responder dropping the request body still answers, then stops the upload with CANCELLED", async () => {
    const { wire, a, b, closes } = pair(new Wire(), { window: 64 * 1024, maxFrameSize: 16 * 1024 });
    a.sendRequestHead(requestHead());
    await a.write(new Uint8Array(64 * 1024));
    const pending = a.write(new Uint8Array(64 * 1024)).catch((e: unknown) => e);
    for await (const _chunk of b.body) break; // e.g. a target that answers 413 without reading
    await turns();
    expect(resetsIn(wire.framesFrom("b"))).toHaveLength(0);
    b.sendResponseHead(responseHead());
    await b.write(Buffer.from("too big"));
    b.end();
    await turns();
    expect((await a.remoteHead).$typeName).toBe("ferry.tunnel.v1.ResponseHead");
    const resets = resetsIn(wire.framesFrom("b"));
    expect(resets).toHaveLength(1);
    expect(resets[0]!.code).toBe(ResetCode.CANCELLED);
    expect(await pending).toMatchObject({ code: ResetCode.CANCELLED, remote: true });
    expect(closes).toEqual({ a: 1, b: 1 });
  });

  it("a complete answer followed by 'stop sending' still reaches a slow reader in full", async () => {
    const { a, b } = pair(new Wire(), { window: 64 * 1024, maxFrameSize: 16 * 1024 });
    a.sendRequestHead(requestHead());
    const upload = a.write(new Uint8Array(200 * 1024)).catch((e: unknown) => e);
    for await (const _chunk of b.body) break; // the target answers without reading
    b.sendResponseHead(responseHead(413));
    const answer = randomBytes(60 * 1024);
    await b.write(answer);
    b.end([create(HeaderSchema, { name: "x-done", value: "yes" })]);
    await turns();
    // End and then Reset(CANCELLED) have both arrived; nothing has been read on "a" yet.
    expect(a.isReset).toMatchObject({ code: ResetCode.CANCELLED, remote: true });
    expect(await readAll(a.body)).toEqual(Buffer.from(answer));
    expect(await a.trailers).toMatchObject([{ name: "x-done", value: "yes" }]);
    expect(await upload).toMatchObject({ code: ResetCode.CANCELLED });
  });

  it("a bodyless answer (204) after dropping the request body also stops the upload", async () => {
    const { wire, a, b, closes } = pair(new Wire(), { window: 64 * 1024, maxFrameSize: 16 * 1024 });
    a.sendRequestHead(requestHead());
    const upload = a.write(new Uint8Array(200 * 1024)).catch((e: unknown) => e);
    for await (const _chunk of b.body) break;
    b.sendResponseHead(responseHead(204, true));
    await turns();
    expect(resetsIn(wire.framesFrom("b")).map((r) => r.code)).toEqual([ResetCode.CANCELLED]);
    expect(await upload).toMatchObject({ code: ResetCode.CANCELLED, remote: true });
    expect(closes).toEqual({ a: 1, b: 1 });
  });

  it("destroying a fully received body does not reset", async () => {
    const { wire, a, b } = pair();
    a.sendRequestHead(requestHead());
    await a.write(Buffer.from("done"));
    a.end();
    expect((await readAll(b.body)).toString()).toBe("done");
    b.body.destroy();
    await turns();
    expect(resetsIn(wire.framesFrom("b"))).toHaveLength(0);
    expect(b.isReset).toBeUndefined();
  });

  it("onClose runs exactly once when both directions end, and later calls change nothing", async () => {
    const { wire, a, b, closes } = pair();
    a.sendRequestHead(requestHead());
    await a.write(Buffer.from("req"));
    a.end();
    expect(closes.a).toBe(0);
    await readAll(b.body);
    b.sendResponseHead(responseHead());
    await b.write(Buffer.from("res"));
    expect(closes.b).toBe(0);
    b.end();
    expect(closes.b).toBe(1);
    expect((await readAll(a.body)).toString()).toBe("res");
    expect(closes.a).toBe(1);

    const framesBefore = wire.sent.length;
    a.reset(ResetCode.CANCELLED, "late");
    b.end();
    a.receive(frame(a.id, { case: "data", value: create(DataSchema, { chunk: new Uint8Array(1) }) }));
    await turns();
    expect(closes).toEqual({ a: 1, b: 1 });
    expect(wire.sent.length).toBe(framesBefore);
    expect(a.isReset).toBeUndefined();
  });

  it("onClose runs exactly once on reset, even when both sides reset", async () => {
    const { a, b, closes } = pair();
    a.sendRequestHead(requestHead());
    await turns();
    a.reset(ResetCode.CANCELLED, "client left");
    b.reset(ResetCode.INTERNAL, "crossing reset");
    a.reset(ResetCode.INTERNAL, "again");
    await turns();
    expect(closes).toEqual({ a: 1, b: 1 });
    expect(a.isReset).toMatchObject({ code: ResetCode.CANCELLED, remote: false });
    expect(b.isReset).toMatchObject({ code: ResetCode.INTERNAL, remote: false });
  });
});

describe("Exchange protocol violations", () => {
  function lone(receiveWindow = 1000) {
    const sent: Frame[] = [];
    let closes = 0;
    const x = new Exchange({
      id: newExchangeId(),
      send: (f) => sent.push(f),
      sendWindow: 1000,
      receiveWindow,
      maxFrameSize: 500,
      onClose: () => closes++,
    });
    return { x, sent, closes: () => closes };
  }
  const data = (n: number): Frame["kind"] => ({ case: "data", value: create(DataSchema, { chunk: new Uint8Array(n) }) });

  const cases: Array<[string, (x: Exchange) => void]> = [
    ["Data before the head", (x) => x.receive(frame(x.id, data(10)))],
    ["End before the head", (x) => x.receive(frame(x.id, { case: "end", value: create(EndSchema) }))],
    [
      "Data beyond the window in one frame",
      (x) => {
        x.acceptHead(requestHead());
        x.receive(frame(x.id, data(1001)));
      },
    ],
    [
      "Data beyond the window over several frames",
      (x) => {
        x.acceptHead(requestHead());
        x.receive(frame(x.id, data(600)));
        x.receive(frame(x.id, data(401)));
      },
    ],
    [
      "a second head",
      (x) => {
        x.acceptHead(requestHead());
        x.receive(frame(x.id, { case: "requestHead", value: requestHead() }));
      },
    ],
    [
      "a second head via a frame",
      (x) => {
        x.receive(frame(x.id, { case: "responseHead", value: responseHead() }));
        x.receive(frame(x.id, { case: "responseHead", value: responseHead() }));
      },
    ],
    ["a zero WindowUpdate", (x) => x.receive(frame(x.id, { case: "windowUpdate", value: create(WindowUpdateSchema, { increment: 0 }) }))],
    [
      // sendWindow is 1000, so this grants one byte more than MAX_WINDOW outstanding.
      "a WindowUpdate granting more than MAX_WINDOW of credit",
      (x) => x.receive(frame(x.id, { case: "windowUpdate", value: create(WindowUpdateSchema, { increment: MAX_WINDOW - 999 }) })),
    ],
    ["a WindowUpdate overflowing 2^31-1", (x) => x.receive(frame(x.id, { case: "windowUpdate", value: create(WindowUpdateSchema, { increment: 0x7fffffff }) }))],
    [
      "Data after End",
      (x) => {
        x.acceptHead(requestHead());
        x.receive(frame(x.id, { case: "end", value: create(EndSchema) }));
        x.receive(frame(x.id, data(1)));
      },
    ],
    [
      "Data after an endStream head",
      (x) => {
        x.receive(frame(x.id, { case: "requestHead", value: requestHead(true) }));
        x.receive(frame(x.id, data(1)));
      },
    ],
    ["an empty frame", (x) => x.receive(frame(x.id, { case: undefined }))],
  ];

  it.each(cases)("%s: the receiver sends one PROTOCOL_ERROR Reset and never throws", (_name, act) => {
    const { x, sent, closes } = lone();
    expect(() => act(x)).not.toThrow();
    const resets = resetsIn(sent);
    expect(resets).toHaveLength(1);
    expect(resets[0]!.code).toBe(ResetCode.PROTOCOL_ERROR);
    expect(resets[0]!.message).toMatch(/^protocol error: /);
    expect(x.isReset).toMatchObject({ code: ResetCode.PROTOCOL_ERROR, remote: false });
    expect(closes()).toBe(1);
  });

  it("data exactly filling the window is accepted", () => {
    const { x, sent } = lone();
    x.acceptHead(requestHead());
    x.receive(frame(x.id, data(600)));
    x.receive(frame(x.id, data(400)));
    expect(resetsIn(sent)).toHaveLength(0);
    expect(x.isReset).toBeUndefined();
  });

  it("a WindowUpdate bringing credit to exactly MAX_WINDOW is accepted", () => {
    const { x, sent } = lone();
    x.receive(frame(x.id, { case: "windowUpdate", value: create(WindowUpdateSchema, { increment: MAX_WINDOW - 1000 }) }));
    expect(resetsIn(sent)).toHaveLength(0);
    expect(x.isReset).toBeUndefined();
  });

  it("frames after a violation are ignored", () => {
    const { x, sent } = lone();
    x.receive(frame(x.id, data(10)));
    x.receive(frame(x.id, data(10)));
    x.receive(frame(x.id, { case: "windowUpdate", value: create(WindowUpdateSchema, { increment: 0 }) }));
    expect(resetsIn(sent)).toHaveLength(1);
  });
});
