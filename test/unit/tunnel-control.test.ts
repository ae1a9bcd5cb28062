import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Frame } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import type { ConnectRequest } from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";
import { createTunnelControl, type TunnelControlOptions } from "../../core/exchange/tunnel-control.js";

// The relay's view (messages from a connector); the connector's is the same code with Welcome for Hello and status.
type FromConnector = ConnectRequest["message"];

function frame(n: number): Frame {
  return { $typeName: "ferry.tunnel.v1.Frame", exchangeId: new Uint8Array([n]), kind: { case: undefined } };
}
const frames = (...ns: number[]): FromConnector => ({ case: "frames", value: { $typeName: "ferry.tunnel.v1.FrameBatch", frames: ns.map(frame) } });
const ping = (nonce: bigint): FromConnector => ({ case: "ping", value: { $typeName: "ferry.tunnel.v1.Ping", nonce } });
const pong = (nonce: bigint): FromConnector => ({ case: "pong", value: { $typeName: "ferry.tunnel.v1.Pong", nonce } });
const goAway = (reason: string): FromConnector => ({ case: "goAway", value: { $typeName: "ferry.tunnel.v1.GoAway", reason } });
const hello: FromConnector = { case: "hello", value: { $typeName: "ferry.tunnel.v1.Hello" } as never };
const status: FromConnector = { case: "status", value: { $typeName: "ferry.tunnel.v1.ConnectorStatus" } as never };

/** One tunnel end's control handler, recording what it asks of its end and what it queues for the peer. */
function start(over: Partial<TunnelControlOptions<FromConnector>> = {}) {
  const calls: string[] = [];
  const queued: string[] = [];
  const outbox = {
    overflowing: false,
    pushControl: (m: { case: "ping" | "pong"; value: { nonce: bigint } }) => queued.push(`${m.case}:${m.value.nonce}`),
  };
  const control = createTunnelControl<FromConnector>({
    outbox,
    onOverflow: () => calls.push("overflow"),
    onFrame: (f) => {
      if (f.exchangeId[0] === 99) throw new Error("bad frame");
      calls.push(`frame:${f.exchangeId[0]}`);
    },
    onFrameFailed: (f, err) => calls.push(`failed:${f.exchangeId[0]}:${(err as Error).message}`),
    onGoAway: (reason) => calls.push(`goAway:${reason}`),
    onOther: (m) => calls.push(`other:${m.case}`),
    ...over,
  });
  return { control, outbox, calls, queued };
}

describe("createTunnelControl", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it.each<[string, FromConnector, string[], string[]]>([
    ["frames, one by one and in order", frames(1, 2, 3), ["frame:1", "frame:2", "frame:3"], []],
    ["an empty batch", frames(), [], []],
    ["a frame that throws: its own failure, the rest of the batch still goes", frames(1, 99, 2), ["frame:1", "failed:99:bad frame", "frame:2"], []],
    ["a ping: answered with its nonce", ping(7n), [], ["pong:7"]],
    ["a pong: nothing to do for the end", pong(1n), [], []],
    ["GoAway: the end decides, with the reason", goAway("rolling restart"), ["goAway:rolling restart"], []],
    ["what only this peer sends: to the end", status, ["other:status"], []],
    ["Hello again: to the end too", hello, ["other:hello"], []],
    ["a message of a case this build does not know", { case: undefined }, ["other:undefined"], []],
  ])("%s", (_, message, calls, queued) => {
    const t = start();
    t.control.startKeepalive(1000, () => t.calls.push("dead"));
    t.control.handle(message);
    expect(t.calls).toEqual(calls);
    expect(t.queued).toEqual(queued);
    t.control.keepalive?.stop();
  });

  it("drops the tunnel when the peer does not read, and takes nothing else from that message", () => {
    const t = start();
    t.control.startKeepalive(1000, () => {});
    t.outbox.overflowing = true;
    for (const m of [frames(1), ping(1n), goAway("x"), status]) t.control.handle(m);
    expect(t.calls).toEqual(["overflow", "overflow", "overflow", "overflow"]);
    expect(t.queued).toEqual([]);
    t.control.keepalive?.stop();
  });

  it("ignores what only the peer sends when the end takes none of it", () => {
    const t = start({ onOther: undefined });
    expect(() => t.control.handle(hello)).not.toThrow();
    expect(t.calls).toEqual([]);
  });

  it("answers no ping before the keepalive is started (the connector waits for Welcome's interval)", () => {
    const t = start();
    expect(t.control.keepalive).toBeUndefined();
    t.control.handle(ping(1n));
    t.control.handle(pong(1n));
    expect(t.queued).toEqual([]);
  });

  it("answers at most two pings per interval: a ping flood queues no flood of pongs", () => {
    const t = start();
    t.control.startKeepalive(1000, () => {});
    const pongs = () => t.queued.filter((q) => q.startsWith("pong"));
    for (let i = 1n; i <= 5n; i++) t.control.handle(ping(i));
    expect(pongs()).toEqual(["pong:1"]);
    vi.advanceTimersByTime(499);
    t.control.handle(ping(6n));
    expect(pongs()).toEqual(["pong:1"]);
    vi.advanceTimersByTime(1);
    t.control.handle(ping(7n));
    expect(pongs()).toEqual(["pong:1", "pong:7"]);
    t.control.keepalive?.stop();
  });

  it("pings the peer each interval through the outbox, and times the answer to its own nonce only", () => {
    const t = start();
    const k = t.control.startKeepalive(1000, () => {});
    expect(t.control.keepalive).toBe(k);
    vi.advanceTimersByTime(250); // the first check
    expect(t.queued).toEqual(["ping:1"]);
    vi.advanceTimersByTime(40);
    t.control.handle(pong(2n));
    expect(k.lastRttMs).toBeUndefined();
    t.control.handle(pong(1n));
    expect(k.lastRttMs).toBe(40);
    vi.advanceTimersByTime(1000);
    expect(t.queued).toEqual(["ping:1", "ping:2"]);
    k.stop();
  });

  it("counts every message as a sign of life, and a silent peer as dead once", () => {
    const t = start();
    t.control.startKeepalive(1000, (silentMs) => t.calls.push(`dead:${silentMs}`));
    for (let i = 0; i < 20; i++) {
      vi.advanceTimersByTime(250);
      t.control.handle(frames());
    }
    expect(t.calls).toEqual([]);
    vi.advanceTimersByTime(10_000);
    expect(t.calls).toEqual(["dead:1750"]);
    t.control.keepalive?.stop();
  });
});
