import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { type Frame, FrameSchema, RequestHeadSchema, ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { Exchange, ExchangeReset } from "../../core/exchange/exchange.js";
import { newExchangeId } from "../../core/exchange/ids.js";
import { createPausingWriter } from "../../core/exchange/pausing-writer.js";

/** An exchange that has sent its head with `window` bytes of credit, and what it puts on the wire. */
function open(window: number) {
  const sent: Frame[] = [];
  const id = newExchangeId();
  const ex = new Exchange({ id, send: (f) => sent.push(f), sendWindow: window, receiveWindow: 1024, maxFrameSize: 1024 });
  ex.sendRequestHead(create(RequestHeadSchema, { target: "app", method: "POST", path: "/" }));
  const grant = (increment: number) => ex.receive(create(FrameSchema, { exchangeId: id, kind: { case: "windowUpdate", value: { increment } } }));
  const bytes = () => sent.flatMap((f) => (f.kind.case === "data" ? [f.kind.value.chunk.byteLength] : []));
  return { ex, grant, bytes };
}

/** A source that records what the writer asked of it. */
function source() {
  const calls: string[] = [];
  return { calls, pause: () => calls.push("pause"), resume: () => calls.push("resume") };
}

const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("createPausingWriter", () => {
  it("sends at once while there is credit, never touching the source", () => {
    const { ex, bytes } = open(10);
    const src = source();
    const writer = createPausingWriter(ex, src, () => expect.fail("no write failed"));
    writer.write(new Uint8Array(4));
    writer.write(new Uint8Array(6));
    expect(bytes()).toEqual([4, 6]);
    expect(src.calls).toEqual([]);
    let after = false;
    writer.afterWrite(() => (after = true));
    expect(after).toBe(true); // nothing waits: at once
  });

  it("pauses the source on a chunk without credit, and resumes it once the exchange took the chunk", async () => {
    const { ex, grant, bytes } = open(4);
    const src = source();
    const writer = createPausingWriter(ex, src, () => expect.fail("no write failed"));
    writer.write(new Uint8Array(10));
    expect(src.calls).toEqual(["pause"]);
    const order: string[] = [];
    writer.afterWrite(() => order.push(`after, resumed: ${src.calls.includes("resume")}`));
    await settle();
    expect(order).toEqual([]); // the chunk still waits
    grant(6);
    await settle();
    expect(bytes()).toEqual([4, 6]);
    expect(src.calls).toEqual(["pause", "resume"]);
    expect(order).toEqual(["after, resumed: true"]);
  });

  it("hands a failed write to its handler instead of resuming the source", async () => {
    const { ex } = open(0);
    const src = source();
    const failures: unknown[] = [];
    const writer = createPausingWriter(ex, src, (err) => failures.push(err));
    writer.write(new Uint8Array(1));
    let after = 0;
    writer.afterWrite(() => after++);
    ex.reset(ResetCode.CANCELLED, "gone");
    await settle();
    expect(src.calls).toEqual(["pause"]);
    expect(failures).toHaveLength(1);
    expect(failures[0]).toBeInstanceOf(ExchangeReset);
    expect(after).toBe(1); // what waited for the write still runs
    writer.afterWrite(() => after++);
    expect(after).toBe(2); // and nothing waits any more
  });
});
