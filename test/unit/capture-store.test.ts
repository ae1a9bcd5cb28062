import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ExchangeSummarySchema } from "../../gen/ferry/admin/v1/admin_service_pb.js";
import { CAPTURE_LIMITS, createCaptureStore } from "../../services/traffic/capture-store.js";

const start = { tenant: "acme", target: "app", durationMs: 60_000, bodyBytes: 8, actor: "admin:t" };
const summary = (id: string) => create(ExchangeSummarySchema, { tenant: "acme", target: "app", exchangeId: id, method: "GET" });

describe("capture store", () => {
  it("taps only its target while it records, and keeps copies of the first body bytes", () => {
    let now = 1_000_000;
    const store = createCaptureStore("n1", CAPTURE_LIMITS, () => now);
    const cap = store.start(start);
    expect(store.tap("acme", "other", [], "")).toBeUndefined();
    expect(store.tap("globex", "app", [], "")).toBeUndefined();
    const tap = store.tap("acme", "app", ["Authorization", "Bearer x", "X-Trace", "t1"], "token=abc&page=2")!;
    const chunk = Buffer.from("12345");
    tap.requestBody(chunk);
    chunk.fill(0x41); // the caller reuses its buffer: the capture must not see it
    tap.requestBody(Buffer.from("6789"));
    tap.responseBody(Buffer.from("12345678"));
    tap.responseHead({ "set-cookie": ["a=1", "b=2"], "content-type": "text/plain", "content-length": 8 });
    expect(tap.finish(summary("e1"))).toBe(cap.captureId);
    const { exchanges } = store.get(cap.captureId);
    const e = exchanges[0]!;
    expect(Buffer.from(e.requestBody).toString()).toBe("12345678");
    expect(e.requestBodyTruncated).toBe(true);
    expect(Buffer.from(e.responseBody).toString()).toBe("12345678");
    expect(e.responseBodyTruncated).toBe(false);
    expect(e.query).toBe("token=%5Bredacted%5D&page=2");
    expect(e.requestHeaders.map((h) => [h.name, h.value])).toEqual([["authorization", "[redacted]"], ["x-trace", "t1"]]);
    expect(e.responseHeaders.map((h) => [h.name, h.value])).toEqual([["set-cookie", "[redacted]"], ["set-cookie", "[redacted]"], ["content-type", "text/plain"], ["content-length", "8"]]);
    now += 60_000;
    expect(store.tap("acme", "app", [], "")).toBeUndefined();
    expect(store.list()[0]?.active).toBe(false);
    // Kept for an hour after its end, then gone.
    now += CAPTURE_LIMITS.keepAfterMs;
    expect(() => store.get(cap.captureId)).toThrow(/no capture/);
    store.close();
  });

  it("drops the oldest exchanges beyond its bytes, and what comes beyond its exchanges in flight", () => {
    const store = createCaptureStore("n1", { ...CAPTURE_LIMITS, maxBytesPerCapture: 1200, maxInFlight: 2 });
    const cap = store.start(start);
    const taps = [store.tap("acme", "app", [], "")!, store.tap("acme", "app", [], "")!];
    expect(store.tap("acme", "app", [], "")).toBeUndefined();
    taps.forEach((t, i) => t.finish(summary(`e${i}`)));
    for (let i = 2; i < 5; i++) store.tap("acme", "app", [], "")!.finish(summary(`e${i}`));
    const { capture, exchanges } = store.get(cap.captureId);
    expect(exchanges.map((e) => e.summary?.exchangeId)).toEqual(["e4", "e3"]);
    expect(capture.dropped).toBe(4n);
    expect(Number(capture.bytes)).toBeLessThanOrEqual(1200);
    store.close();
  });

  it("records one capture per target and two per tenant, and forgets a deleted tenant", () => {
    const store = createCaptureStore("n1");
    store.start(start);
    expect(() => store.start(start)).toThrow(/records target "app" already/);
    store.start({ ...start, target: "b" });
    expect(() => store.start({ ...start, target: "c" })).toThrow(/has 2 captures recording/);
    expect(store.start({ ...start, tenant: "globex" }).tenant).toBe("globex");
    store.forgetTenant("acme");
    expect(store.list().map((c) => c.tenant)).toEqual(["globex"]);
    expect(store.tap("acme", "app", [], "")).toBeUndefined();
    store.close();
  });

  it("names the node that keeps a capture started elsewhere", () => {
    const store = createCaptureStore("n1");
    expect(() => store.get("n2-0123456789ab")).toThrow(/kept by node "n2"/);
    expect(() => store.get("garbage")).toThrow(/there is no capture "garbage"/);
    store.close();
  });
});
