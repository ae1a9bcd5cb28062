import { describe, expect, it } from "vitest";
import { type Frame, type Header, ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import type { ByteBudget } from "../../core/exchange/byte-budget.js";
import { type BodySink, Exchange } from "../../core/exchange/exchange.js";
import { MAX_FRAME_SIZE } from "../../core/exchange/protocol.js";
import { fuzzSeed, type Rng, rng } from "../helpers/fuzz.js";

// The exchange state machine against a wire that duplicates, reorders, drops and forges frames, and consumers
// that pause, throw and give up: nothing ever throws out of receive(), the queue never holds more than the
// window, every exchange ends (or, when frames were lost or forged, stays within its windows until its owner
// resets it), and every byte taken from a budget is given back.

const WINDOW = 16 * 1024;
const FRAME = 4 * 1024;
const CASES = 2000;
/** Actions by weight: 4 (deliver in order) dominates; 5-8 (reorder, duplicate, drop, forge) are rare. */
const ACTIONS = [0, 0, 1, 1, 1, 1, 2, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 5, 6, 7, 8, 9, 9, 9, 10, 10, 11, 12, 12];

type Side = "a" | "b";

/** A budget that notices bytes given back twice instead of hiding them. */
function strictBudget(limit: number, problems: string[]): ByteBudget {
  let used = 0;
  return {
    take(n) {
      if (used + n > limit) return false;
      used += n;
      return true;
    },
    give(n) {
      used -= n;
      if (used < 0) problems.push(`budget gave back ${-used} bytes more than it took`);
    },
    get used() {
      return used;
    },
  };
}

interface End {
  side: Side;
  ex: Exchange;
  peer?: End;
  /** How its consumer behaves; "calm" once the case winds down. */
  mood: "calm" | "moody";
  kind: "sink" | "readable";
  consumed: boolean;
  paused: boolean;
  headSent: boolean;
  /** A RequestHead reached it (the answering end speaks only after one). */
  asked: boolean;
}

function header(name: string, value: string): Header {
  return { $typeName: "ferry.tunnel.v1.Header", name, value };
}

function randomFrame(r: Rng, id: Uint8Array): Frame {
  const kinds: Array<() => Frame["kind"]> = [
    () => ({
      case: "requestHead",
      value: {
        $typeName: "ferry.tunnel.v1.RequestHead",
        target: "app",
        method: r.pick(["GET", "POST", "", "\r\n"]),
        path: "/",
        query: "",
        headers: [],
        clientAddress: "",
        upgrade: r.chance(0.2),
        endStream: r.chance(0.5),
        responseWindow: r.pick([0, 1, WINDOW, 2 ** 32 - 1]),
        authority: "",
      },
    }),
    () => ({ case: "responseHead", value: { $typeName: "ferry.tunnel.v1.ResponseHead", status: r.pick([0, 200, 101, 99999]), headers: [], endStream: r.chance(0.5) } }),
    () => ({ case: "data", value: { $typeName: "ferry.tunnel.v1.Data", chunk: new Uint8Array(r.pick([0, 1, 100, FRAME, WINDOW, MAX_FRAME_SIZE + 1])) } }),
    () => ({ case: "end", value: { $typeName: "ferry.tunnel.v1.End", trailers: r.chance(0.5) ? [header("grpc-status", "0")] : [] } }),
    () => ({ case: "reset", value: { $typeName: "ferry.tunnel.v1.Reset", code: r.pick([0, ResetCode.CANCELLED, 9999]) as ResetCode, message: "" } }),
    () => ({ case: "windowUpdate", value: { $typeName: "ferry.tunnel.v1.WindowUpdate", increment: r.pick([0, 1, WINDOW, 2 ** 32 - 1]) } }),
    () => ({ case: undefined }),
  ];
  return { $typeName: "ferry.tunnel.v1.Frame", exchangeId: id, kind: r.pick(kinds)() };
}

/** The state of an end, for a failure message. */
function stateOf(end: End): string {
  const x = end.ex as unknown as Record<string, unknown>;
  const fields = ["headSent", "localEnded", "headReceived", "remoteEnded", "closed", "bodyDone", "paused", "abandoned", "credit", "receiveCredit", "unacked"];
  return `${end.kind} consumed=${end.consumed} ${fields.map((f) => `${f}=${String(x[f])}`).join(" ")} reset=${end.ex.isReset?.message}`;
}

async function runCase(seed: number): Promise<string[]> {
  const r = rng(seed);
  const problems: string[] = [];
  /** Frames may be lost or forged (otherwise only duplicated and reordered). */
  const lossy = r.chance(0.5);
  const budgets = { a: strictBudget(r.pick([FRAME, WINDOW, 4 * WINDOW]), problems), b: strictBudget(r.pick([FRAME, WINDOW, 4 * WINDOW]), problems) };
  const wire: Array<{ to: End; frame: Frame }> = [];
  const ends: End[] = [];

  const guard = (what: string, fn: () => void) => {
    try {
      fn();
    } catch (err) {
      problems.push(`${what} threw: ${String(err)}`);
    }
  };
  const moody = (end: End, p: number) => end.mood === "moody" && r.chance(p);

  const pairs = 1 + r.int(3);
  for (let i = 0; i < pairs; i++) {
    const id = r.bytes(16);
    const pair: Partial<Record<Side, End>> = {};
    for (const side of ["a", "b"] as const) {
      const end: End = { side, mood: "moody", kind: r.chance(0.3) ? "readable" : "sink", consumed: false, paused: false, headSent: false, asked: false } as End;
      end.ex = new Exchange({
        id,
        send: (frame) => {
          if (end.peer) wire.push({ to: end.peer, frame });
        },
        sendWindow: WINDOW,
        receiveWindow: WINDOW,
        maxFrameSize: FRAME,
        budget: budgets[side],
        onFault: () => {},
        onClose: () => {
          if (moody(end, 0.05)) throw new Error("onClose throws");
        },
      });
      end.ex.onReset = () => {
        if (moody(end, 0.05)) throw new Error("onReset throws");
      };
      pair[side] = end;
      ends.push(end);
    }
    pair.a!.peer = pair.b;
    pair.b!.peer = pair.a;
  }

  const consume = (end: End) => {
    if (end.consumed) return;
    end.consumed = true;
    if (end.kind === "readable") {
      end.ex.body.on("data", () => {});
      end.ex.body.pause();
      return;
    }
    const sink: BodySink = {
      data: () => {
        if (moody(end, 0.03)) throw new Error("data throws");
        end.paused = moody(end, 0.3);
        return !end.paused;
      },
      end: () => {
        if (moody(end, 0.1)) throw new Error("end throws");
      },
      error: () => {
        if (moody(end, 0.1)) throw new Error("error throws");
      },
    };
    end.ex.consume(sink);
  };
  const resume = (end: End) => {
    if (!end.consumed) return;
    if (end.kind === "readable") {
      if (end.mood === "calm") end.ex.body.resume();
      else end.ex.body.read();
    } else if (end.paused) {
      end.paused = false;
      end.ex.resume();
    }
  };
  const sendHead = (end: End) => {
    if (end.headSent) return;
    if (end.side === "a") {
      end.headSent = true;
      end.ex.sendRequestHead({
        $typeName: "ferry.tunnel.v1.RequestHead",
        target: "app",
        method: "POST",
        path: "/",
        query: "",
        headers: [],
        clientAddress: "",
        upgrade: false,
        endStream: r.chance(0.2),
        responseWindow: WINDOW,
        authority: "",
      });
    } else if (end.asked) {
      // The answering end speaks once it has a request: the connector makes its Exchange from the head.
      end.headSent = true;
      end.ex.sendResponseHead({ $typeName: "ferry.tunnel.v1.ResponseHead", status: 200, headers: [], endStream: r.chance(0.2) });
    }
  };
  const deliver = (i: number) => {
    const [item] = wire.splice(i, 1);
    if (!item) return;
    if (item.frame.kind.case === "requestHead") item.to.asked = true;
    guard(`receive(${item.frame.kind.case})`, () => item.to.ex.receive(item.frame));
  };
  const check = (when: string) => {
    for (const end of ends) {
      if (end.ex.buffered > WINDOW) problems.push(`${when}: ${end.side} queues ${end.ex.buffered} bytes, window ${WINDOW}`);
    }
    for (const [side, budget] of Object.entries(budgets)) if (budget.used < 0) problems.push(`${when}: budget ${side} at ${budget.used}`);
  };

  const steps = 20 + r.int(150);
  for (let step = 0; step < steps && problems.length === 0; step++) {
    const end = r.pick(ends);
    // Mostly the wire's normal work; now and then a duplicate, a frame out of order, a loss, a forgery.
    const action = r.pick(ACTIONS);
    switch (action) {
      case 0:
        sendHead(end);
        break;
      case 1: {
        if (!end.headSent) break; // as every user of Exchange does: the head goes first
        const chunk = new Uint8Array(1 + r.int(2 * FRAME));
        if (!end.ex.writeNow(chunk)) end.ex.write(chunk).catch(() => {});
        break;
      }
      case 2:
        if (end.headSent) end.ex.end(r.chance(0.3) ? [header("x-t", "1")] : undefined);
        break;
      case 3:
        if (r.chance(0.2)) end.ex.reset(r.pick([ResetCode.CANCELLED, ResetCode.INTERNAL]), "fuzz");
        break;
      case 4:
        if (wire.length > 0) deliver(0);
        break;
      case 5:
        if (wire.length > 0) deliver(r.int(wire.length));
        break;
      case 6:
        if (wire.length > 0) wire.push(wire[r.int(wire.length)]!);
        break;
      case 7:
        if (lossy && wire.length > 0) wire.splice(r.int(wire.length), 1);
        break;
      case 8:
        // A forged frame is as good as a lost one: the ends may disagree from then on, so only lossy cases forge.
        if (lossy && r.chance(0.3)) guard("receive(forged)", () => end.ex.receive(randomFrame(r, end.ex.id)));
        break;
      case 9:
        resume(end);
        break;
      case 10:
        consume(end);
        break;
      case 11:
        if (end.kind === "readable" && end.consumed && r.chance(0.1)) end.ex.body.destroy();
        break;
      default:
        await null;
    }
    check(`step ${step}`);
  }

  // Winding down: consumers read everything, both sides finish; a lossless wire must then end every exchange.
  for (const end of ends) {
    end.mood = "calm";
    consume(end);
  }
  for (let round = 0; round < 50; round++) {
    for (const end of ends) {
      sendHead(end);
      resume(end);
      if (end.headSent) end.ex.end();
    }
    while (wire.length > 0) deliver(0);
    await new Promise<void>((resolve) => setImmediate(resolve));
    check(`winding down, round ${round}`);
    if (wire.length === 0 && (ends.every((e) => e.ex.isClosed) || (lossy && round > 3))) break;
  }
  for (const end of ends) {
    if (!end.ex.isClosed && !lossy) problems.push(`${end.side} never ended on a lossless wire: ${stateOf(end)}`);
    // Owners give up on whatever is left (a client that went away): every byte of budget comes back.
    end.ex.reset(ResetCode.CANCELLED, "owner gives up");
  }
  while (wire.length > 0) deliver(0);
  for (const [side, budget] of Object.entries(budgets)) if (budget.used !== 0) problems.push(`budget ${side} still holds ${budget.used} bytes`);
  return problems;
}

describe("Exchange fuzz", () => {
  it(`${CASES} random exchanges over a hostile wire: nothing throws, queues stay within windows, budgets return to zero`, async () => {
    const seed = fuzzSeed("exchange fuzz");
    for (let i = 0; i < CASES; i++) {
      const caseSeed = (seed + i) >>> 0;
      const problems = await runCase(caseSeed);
      if (problems.length > 0) expect.fail(`FUZZ_SEED=${seed}, case ${i} (case seed ${caseSeed}): ${problems.slice(0, 5).join("; ")}`);
    }
  });
});
