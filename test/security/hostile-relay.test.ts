import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { newExchangeId } from "../../core/exchange/ids.js";
import { type Frame, type RequestHead, ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { frame, HostileRelay, type HostileTunnel, requestHead } from "../helpers/hostile-relay.js";
import { startTestConnector } from "../helpers/in-process.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";

// What a compromised relay can make a connector do: nothing it sends crashes the connector or reaches another
// exchange; a bad request is reset with a reason, and the next good one is served.

const KEY = `fck_0123456789abcdef_${"A".repeat(43)}`;
let relay: HostileRelay;
let target: TestTarget;
let connector: Connector;
let tunnel: HostileTunnel;

beforeAll(async () => {
  // A keepalive interval no timer can hold: the connector must not turn it into a ping flood or a crash.
  relay = await HostileRelay.start({ keepaliveInterval: { seconds: 10n ** 15n, nanos: 0 } });
  target = await startTestTarget("t");
  const started = startTestConnector(relay.url, KEY, { app: target.url }, { tunnels: 1 });
  tunnel = (await relay.tunnelsUp(1))[0]!;
  connector = await started;
});

afterAll(async () => {
  await connector?.stop();
  await relay?.close();
  await target?.close();
});

const head = (init: Partial<RequestHead> = {}) => requestHead("app", init);

/** Sends a request and resolves with the connector's first answer to it: a response head or a reset. */
async function ask(h: RequestHead, extra: (id: Uint8Array) => Frame[] = () => []): Promise<Frame> {
  const id = newExchangeId();
  tunnel.sendFrames([frame(id, { case: "requestHead", value: h }), ...extra(id)]);
  return tunnel.frameOf(id, (f) => f.kind.case === "responseHead" || f.kind.case === "reset");
}

async function served(): Promise<void> {
  const answer = await ask(head());
  expect(answer.kind.case).toBe("responseHead");
  expect(answer.kind.case === "responseHead" && answer.kind.value.status).toBe(200);
}

describe("a connector against a hostile relay", () => {
  it("resets requests with fields it cannot use, with a reason, and serves the next", async () => {
    const bad: Array<[string, Partial<RequestHead>]> = [
      ["a method that is not a token", { method: "GE T\r\n" }],
      ["an empty method", { method: "" }],
      ["a response window past the protocol's", { responseWindow: 2 ** 32 - 1 }],
      ["a response window of one byte", { responseWindow: 1 }],
      ["a timeout no timer can keep", { timeout: { $typeName: "google.protobuf.Duration", seconds: 10n ** 15n, nanos: 0 } }],
      ["negative nanos", { timeout: { $typeName: "google.protobuf.Duration", seconds: 1n, nanos: -1 } }],
    ];
    for (const [what, init] of bad) {
      const answer = await ask(head(init));
      expect(answer.kind.case, what).toBe("reset");
      expect(answer.kind.value, what).toMatchObject({ code: ResetCode.PROTOCOL_ERROR });
    }
    await served();
  });

  it("resets requests with headers its transports refuse, never forwarding them", async () => {
    const seen = target.seen.length;
    for (const h of [
      [{ $typeName: "ferry.tunnel.v1.Header" as const, name: "bad name", value: "x" }],
      [{ $typeName: "ferry.tunnel.v1.Header" as const, name: "x-split", value: "a\r\nx-injected: 1" }],
      [{ $typeName: "ferry.tunnel.v1.Header" as const, name: "x-nul", value: "a\u0000b" }],
    ]) {
      const answer = await ask(head({ headers: h }));
      expect(answer.kind.case).toBe("reset");
    }
    expect(target.seen.slice(seen).some((r) => "x-injected" in r.headers)).toBe(false);
    await served();
  });

  it("ignores frames for exchanges it does not have, and a request whose id is not 16 bytes", async () => {
    const stranger = newExchangeId();
    tunnel.sendFrames([
      frame(stranger, { case: "data", value: { $typeName: "ferry.tunnel.v1.Data", chunk: Buffer.from("x") } }),
      frame(stranger, { case: "end", value: { $typeName: "ferry.tunnel.v1.End", trailers: [] } }),
      frame(stranger, { case: "windowUpdate", value: { $typeName: "ferry.tunnel.v1.WindowUpdate", increment: 2 ** 32 - 1 } }),
      frame(stranger, { case: "reset", value: { $typeName: "ferry.tunnel.v1.Reset", code: 9999 as ResetCode, message: "" } }),
      frame(stranger, { case: undefined }),
      frame(new Uint8Array(3), { case: "requestHead", value: head() }),
      frame(new Uint8Array(0), { case: "requestHead", value: head() }),
    ]);
    await served();
    const short = tunnel.frames().filter((f) => f.exchangeId.length !== 16);
    expect(short).toEqual([]);
  });

  it("resets an exchange that gets frames it may not (a second head, a window past the limit, an empty frame), and no other", async () => {
    const upload = head({ method: "POST", path: "/echo", endStream: false });
    for (const bad of [
      (id: Uint8Array) => frame(id, { case: "requestHead", value: head() }),
      (id: Uint8Array) => frame(id, { case: "windowUpdate", value: { $typeName: "ferry.tunnel.v1.WindowUpdate", increment: 2 ** 32 - 1 } }),
      (id: Uint8Array) => frame(id, { case: undefined }),
      (id: Uint8Array) => frame(id, { case: "data", value: { $typeName: "ferry.tunnel.v1.Data", chunk: new Uint8Array(70_000) } }),
    ]) {
      const answer = await ask(upload, (id) => [bad(id)]);
      expect(answer.kind.case).toBe("reset");
      expect(answer.kind.value).toMatchObject({ code: ResetCode.PROTOCOL_ERROR });
    }
    await served();
  });
});
