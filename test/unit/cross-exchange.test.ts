import { describe, expect, it } from "vitest";
import type { Frame } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { exchangeKey } from "../../core/exchange/ids.js";
import { resetFrame } from "../../core/exchange/reset-frame.js";
import { encodeTunnelMessage } from "../../core/exchange/tunnel-codec.js";
import { type CrossExchange, type CrossExchanges, deliverBatch } from "../../services/cluster/cross-exchange.js";

// One batch from NATS or a peer link, handed frame by frame to the exchanges it names.

const id = (n: number) => new Uint8Array(16).fill(n);
const batch = (frames: Frame[]) =>
  encodeTunnelMessage({ $typeName: "ferry.tunnel.v1.ConnectResponse", message: { case: "frames", value: { $typeName: "ferry.tunnel.v1.FrameBatch", frames } } });

function exchanges(peer: string) {
  const got: Frame[] = [];
  const ex: CrossExchange = { peer, receive: (f) => got.push(f), fail: () => {}, start: 0, lastFrame: 0 };
  const into: CrossExchanges = new Map([[exchangeKey(id(1)), ex]]);
  const faults: string[] = [];
  return { into, ex, got, faults, fault: (reason: string) => void faults.push(reason) };
}

describe("deliverBatch", () => {
  it("hands a link's frames to exchanges shared with the node at its other end only", () => {
    const t = exchanges("b");
    const link = { node: "b", kind: "res" as const };
    deliverBatch(batch([resetFrame(id(1), ResetCode.CANCELLED, "x"), resetFrame(id(2), ResetCode.CANCELLED, "late")]), t.into, t.fault, link);
    expect(t.got).toHaveLength(1);
    expect(t.ex.linkIn).toBe(link);
    expect(t.ex.lastFrame).toBeGreaterThan(0);
    expect(t.faults).toEqual([]);

    const forged = exchanges("b");
    deliverBatch(batch([resetFrame(id(1), ResetCode.CANCELLED, "x")]), forged.into, forged.fault, { node: "c", kind: "res" });
    expect(forged.got).toEqual([]);
    expect(forged.ex.linkIn).toBeUndefined();
    expect(forged.faults).toEqual(["peer link frame for an exchange of another node"]);
  });

  it("counts a batch it cannot read, and a message that holds no frames", () => {
    const t = exchanges("b");
    deliverBatch(Uint8Array.from([0x12, 0x7f]), t.into, t.fault);
    deliverBatch(new Uint8Array(0), t.into, t.fault);
    expect(t.faults).toEqual(["malformed frame batch", "message without frames on a frames subject"]);
    expect(t.got).toEqual([]);
  });
});
