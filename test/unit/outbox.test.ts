import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { DataSchema, type Frame, FrameSchema, WindowUpdateSchema } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { Outbox, type OutboxItem } from "../../core/exchange/outbox.js";
import { MAX_BATCH_BYTES, OUTBOX_HARD_LIMIT, OUTBOX_HIGH_WATER, OUTBOX_LOW_WATER } from "../../core/exchange/protocol.js";

let seq = 0;
function dataFrame(bytes: number): Frame {
  return create(FrameSchema, {
    exchangeId: new Uint8Array([seq++ & 0xff]),
    kind: { case: "data", value: create(DataSchema, { chunk: new Uint8Array(bytes) }) },
  });
}
function updateFrame(): Frame {
  return create(FrameSchema, { kind: { case: "windowUpdate", value: create(WindowUpdateSchema, { increment: 1 }) } });
}

/** What the iterator yields, with frames replaced by their identity in `all`. */
function describeItem(item: OutboxItem<string>, all: Frame[]): string {
  return item.kind === "control" ? `control:${item.message}` : `frames:${item.frames.map((f) => all.indexOf(f)).join(",")}`;
}

async function drain(outbox: Outbox<string>, all: Frame[]): Promise<string[]> {
  const out: string[] = [];
  for await (const item of outbox) out.push(describeItem(item, all));
  return out;
}

async function turns(n = 5): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

describe("Outbox", () => {
  it("batches consecutive frames and keeps control messages in order between batches", async () => {
    const outbox = new Outbox<string>();
    const f = [dataFrame(1), dataFrame(2), dataFrame(3), dataFrame(4), updateFrame()];
    outbox.pushFrame(f[0]!);
    outbox.pushFrame(f[1]!);
    outbox.pushControl("ping");
    outbox.pushControl("pong");
    outbox.pushFrame(f[2]!);
    outbox.pushFrame(f[3]!);
    outbox.pushFrame(f[4]!);
    outbox.pushControl("bye");
    expect(outbox.size).toBe(8);
    outbox.close();
    expect(await drain(outbox, f)).toEqual(["frames:0,1", "control:ping", "control:pong", "frames:2,3,4", "control:bye"]);
    expect(outbox.size).toBe(0);
  });

  it("wakes a waiting reader when something is pushed", async () => {
    const outbox = new Outbox<string>();
    const it = outbox[Symbol.asyncIterator]();
    let done = false;
    const next = it.next().then((r) => {
      done = true;
      return r;
    });
    await turns();
    expect(done).toBe(false);
    outbox.pushControl("hello");
    expect(await next).toEqual({ done: false, value: { kind: "control", message: "hello" } });
  });

  it("frames pushed while the reader is busy leave together in the next batch", async () => {
    const outbox = new Outbox<string>();
    const f = [dataFrame(1), dataFrame(1), dataFrame(1)];
    const it = outbox[Symbol.asyncIterator]();
    outbox.pushFrame(f[0]!);
    const first = await it.next();
    expect(first.value).toEqual({ kind: "frames", frames: [f[0]] });
    outbox.pushFrame(f[1]!);
    outbox.pushFrame(f[2]!);
    const second = await it.next();
    expect(second.value).toEqual({ kind: "frames", frames: [f[1], f[2]] });
  });

  it("close() lets the reader drain what is queued, then ends the iteration", async () => {
    const outbox = new Outbox<string>();
    const f = [dataFrame(10)];
    outbox.pushControl("a");
    outbox.pushFrame(f[0]!);
    outbox.close();
    expect(await drain(outbox, f)).toEqual(["control:a", "frames:0"]);
  });

  it("close() ends a reader that is waiting on an empty queue", async () => {
    const outbox = new Outbox<string>();
    const reading = drain(outbox, []);
    await turns();
    outbox.close();
    expect(await reading).toEqual([]);
  });

  it("ignores pushes after close()", async () => {
    const outbox = new Outbox<string>();
    outbox.close();
    outbox.pushFrame(dataFrame(1));
    outbox.pushControl("late");
    expect(outbox.size).toBe(0);
    expect(await drain(outbox, [])).toEqual([]);
  });

  it("abort() ends the iteration at once and drops what is queued", async () => {
    const outbox = new Outbox<string>();
    outbox.pushFrame(dataFrame(1));
    outbox.pushControl("x");
    outbox.abort();
    expect(outbox.size).toBe(0);
    outbox.pushControl("after abort");
    expect(outbox.size).toBe(0);
    expect(await drain(outbox, [])).toEqual([]);
  });

  it("abort() while a reader holds a batch ends the iteration on its next pull", async () => {
    const outbox = new Outbox<string>();
    const it = outbox[Symbol.asyncIterator]();
    outbox.pushControl("first");
    outbox.pushControl("second");
    expect((await it.next()).value).toEqual({ kind: "control", message: "first" });
    outbox.abort();
    expect(await it.next()).toEqual({ done: true, value: undefined });
  });

  it("abort() wakes a waiting reader", async () => {
    const outbox = new Outbox<string>();
    const reading = drain(outbox, []);
    await turns();
    outbox.abort();
    expect(await reading).toEqual([]);
  });

  it("stops growing a batch once it holds MAX_BATCH_BYTES of data", async () => {
    const outbox = new Outbox<string>();
    const chunk = Math.floor(MAX_BATCH_BYTES * 0.3);
    const frames = Array.from({ length: 10 }, () => dataFrame(chunk));
    for (const f of frames) outbox.pushFrame(f);
    outbox.close();
    const batches: Frame[][] = [];
    for await (const item of outbox) if (item.kind === "frames") batches.push(item.frames);
    // 0.3 * 4 = 1.2 >= 1 after the 4th frame; 3 frames (0.9) are still under.
    expect(batches.map((b) => b.length)).toEqual([4, 4, 2]);
    expect(batches.flat()).toEqual(frames);
    for (const batch of batches) {
      const bytes = batch.map((f) => (f.kind.case === "data" ? f.kind.value.chunk.byteLength : 0));
      const beforeLast = bytes.slice(0, -1).reduce((s, n) => s + n, 0);
      expect(beforeLast).toBeLessThan(MAX_BATCH_BYTES);
    }
  });

  it("a single frame at or over MAX_BATCH_BYTES makes a batch of its own", async () => {
    const outbox = new Outbox<string>();
    const big = [dataFrame(MAX_BATCH_BYTES), dataFrame(1), dataFrame(MAX_BATCH_BYTES + 1), dataFrame(1)];
    for (const f of big) outbox.pushFrame(f);
    outbox.close();
    expect(await drain(outbox, big)).toEqual(["frames:0", "frames:1,2", "frames:3"]);
  });

  it("many small non-data frames leave in one batch", async () => {
    const outbox = new Outbox<string>();
    const frames = Array.from({ length: 500 }, () => updateFrame());
    for (const f of frames) outbox.pushFrame(f);
    outbox.close();
    const batches: number[] = [];
    for await (const item of outbox) if (item.kind === "frames") batches.push(item.frames.length);
    expect(batches).toEqual([500]);
  });
});

describe("Outbox back-pressure", () => {
  const fill = (outbox: Outbox<string>, bytes: number, chunk = 256 * 1024) => {
    for (let n = 0; n < bytes; n += chunk) outbox.pushFrame(dataFrame(chunk));
  };

  it("counts queued bytes and is not congested below the high-water mark", () => {
    const outbox = new Outbox<string>();
    expect(outbox.bytes).toBe(0);
    outbox.pushFrame(dataFrame(1000));
    outbox.pushControl("control messages count too");
    expect(outbox.bytes).toBeGreaterThanOrEqual(1000);
    expect(outbox.congested).toBe(false);
    expect(outbox.ready()).toBeUndefined();
  });

  it("above the high-water mark, ready() waits until the reader drains below the low-water mark", async () => {
    const outbox = new Outbox<string>();
    fill(outbox, OUTBOX_HIGH_WATER);
    expect(outbox.congested).toBe(true);
    const ready = outbox.ready();
    expect(ready).toBeInstanceOf(Promise);
    let released = false;
    void ready!.then(() => (released = true));

    const it = outbox[Symbol.asyncIterator]();
    while (outbox.bytes >= OUTBOX_LOW_WATER) {
      await turns(1);
      expect(released).toBe(false);
      await it.next();
    }
    await turns(1);
    expect(released).toBe(true);
    expect(outbox.congested).toBe(false);
  });

  it("abort() releases waiting writers and resets the byte count", async () => {
    const outbox = new Outbox<string>();
    fill(outbox, OUTBOX_HIGH_WATER);
    const ready = outbox.ready()!;
    outbox.abort();
    await expect(ready).resolves.toBeUndefined();
    expect(outbox.bytes).toBe(0);
    expect(outbox.ready()).toBeUndefined();
  });

  it("after close() writers are never held back", () => {
    const outbox = new Outbox<string>();
    fill(outbox, OUTBOX_HIGH_WATER);
    outbox.close();
    expect(outbox.ready()).toBeUndefined();
  });

  it("close() releases writers already waiting on ready()", async () => {
    const outbox = new Outbox<string>();
    fill(outbox, OUTBOX_HIGH_WATER);
    const ready = outbox.ready()!;
    outbox.close();
    await expect(ready).resolves.toBeUndefined();
  });

  it("control messages count towards the limits, and past the hard limit the outbox is overflowing", () => {
    const outbox = new Outbox<string>();
    let n = 0;
    while (!outbox.congested) {
      outbox.pushControl(`pong ${n++}`);
    }
    expect(n).toBeGreaterThan(1000);
    expect(outbox.overflowing).toBe(false);
    fill(outbox, OUTBOX_HARD_LIMIT);
    expect(outbox.overflowing).toBe(true);
  });
});
