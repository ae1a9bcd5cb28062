import { create } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it, vi } from "vitest";
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

// Captures hold what a hostile client sends while an operator looks: every byte they keep is bounded, copied and
// redacted, and every refusal says why.

const errorOf = (f: () => unknown): { kind?: string; code?: string; message?: string } => {
  try {
    f();
  } catch (err) {
    return err as { kind: string; code: string; message: string };
  }
  throw new Error("did not throw");
};
/** An exchange with no headers, no query and no body: the store counts 512 bytes for it. */
const bare = (store: ReturnType<typeof createCaptureStore>, id: string, tenant = "acme", target = "app") =>
  store.tap(tenant, target, [], "")!.finish(create(ExchangeSummarySchema, { tenant, target, exchangeId: id, method: "GET" }));

describe("capture bodies", () => {
  const cases: Array<[string, number[], string, boolean]> = [
    ["limit-1 bytes", [7], "AAAAAAA", false],
    ["exactly the limit", [8], "AAAAAAAA", false],
    ["limit+1 bytes", [9], "AAAAAAAA", true],
    ["the limit in chunks", [3, 5], "AAABBBBB", false],
    ["the limit in chunks, then an empty one", [3, 5, 0], "AAABBBBB", false],
    ["the limit in chunks, then one byte", [3, 5, 1], "AAABBBBB", true],
    ["a chunk crossing the limit", [4, 5], "AAAABBBB", true],
    ["nothing", [], "", false],
    ["empty chunks only", [0, 0], "", false],
  ];
  it.each(cases)("keeps %s of an 8-byte capture exactly, truncated flag as it is", (_, sizes, kept, truncated) => {
    const store = createCaptureStore("n1");
    const cap = store.start(start);
    const tap = store.tap("acme", "app", [], "")!;
    sizes.forEach((n, i) => {
      tap.requestBody(Buffer.alloc(n, "ABC"[i]!));
      tap.responseBody(Buffer.alloc(n, "ABC"[i]!));
    });
    tap.finish(summary("e1"));
    const e = store.get(cap.captureId).exchanges[0]!;
    expect([Buffer.from(e.requestBody).toString(), e.requestBodyTruncated]).toEqual([kept, truncated]);
    expect([Buffer.from(e.responseBody).toString(), e.responseBodyTruncated]).toEqual([kept, truncated]);
    store.close();
  });

  it("keeps nothing of a body when body_bytes is 0 and says that there was one", () => {
    const store = createCaptureStore("n1");
    const cap = store.start({ ...start, bodyBytes: 0 });
    const tap = store.tap("acme", "app", [], "")!;
    tap.requestBody(Buffer.from("x"));
    tap.finish(summary("e1"));
    const e = store.get(cap.captureId).exchanges[0]!;
    expect([e.requestBody.length, e.requestBodyTruncated, e.responseBodyTruncated]).toEqual([0, true, false]);
    store.close();
  });

  it("copies every chunk it keeps: the caller may reuse or overwrite its buffers, request and response alike", () => {
    const store = createCaptureStore("n1");
    const cap = store.start(start);
    const tap = store.tap("acme", "app", [], "")!;
    const parent = Buffer.from("abcdefghijklmnop");
    const request = parent.subarray(0, 4);
    const response = new Uint8Array(Buffer.from("wxyz"));
    tap.requestBody(request);
    tap.responseBody(response);
    parent.fill(0x2e);
    response.fill(0x2e);
    tap.requestBody(parent.subarray(4, 8));
    tap.finish(summary("e1"));
    const e = store.get(cap.captureId).exchanges[0]!;
    expect(Buffer.from(e.requestBody).toString()).toBe("abcd....");
    expect(Buffer.from(e.responseBody).toString()).toBe("wxyz");
    store.close();
  });
});

describe("capture redaction", () => {
  it("redacts request headers by name and secrets in the others, keeping order, repeats and lower-case names", () => {
    const store = createCaptureStore("n1");
    const cap = store.start(start);
    const tap = store.tap("acme", "app", [
      "Host", "acme.example",
      "Authorization", "Basic Ym9iOmh1bnRlcjI=",
      "Proxy-Authorization", "Bearer x",
      "Cookie", "sid=1",
      "X-Api-Key", "k",
      "Accept", "text/html",
      "Accept", "application/json",
      "X-Forwarded-Key-Hint", "fat_0123456789abcdef_c2VjcmV0",
      "Referer", "https://x.example/?t=fat_0123456789abcdef_c2VjcmV0",
    ], "")!;
    tap.finish(summary("e1"));
    const e = store.get(cap.captureId).exchanges[0]!;
    expect(e.requestHeaders.map((h) => [h.name, h.value])).toEqual([
      ["host", "acme.example"],
      ["authorization", "[redacted]"],
      ["proxy-authorization", "[redacted]"],
      ["cookie", "[redacted]"],
      ["x-api-key", "[redacted]"],
      ["accept", "text/html"],
      ["accept", "application/json"],
      ["x-forwarded-key-hint", "[redacted]"],
      ["referer", "https://x.example/?t=[redacted]"],
    ]);
    store.close();
  });

  it("redacts response headers: every Set-Cookie of an array, secrets in others, numbers as text, unset ones left out", () => {
    const store = createCaptureStore("n1");
    const cap = store.start(start);
    const tap = store.tap("acme", "app", [], "")!;
    tap.responseHead({
      "Set-Cookie": ["sid=1; HttpOnly", "csrf=2"],
      location: "/next?token=x&jwt=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
      "content-length": 12,
      "x-absent": undefined,
      vary: ["accept", "origin"],
    });
    tap.finish(summary("e1"));
    const e = store.get(cap.captureId).exchanges[0]!;
    expect(e.responseHeaders.map((h) => [h.name, h.value])).toEqual([
      ["Set-Cookie", "[redacted]"],
      ["Set-Cookie", "[redacted]"],
      ["location", "/next?token=x&jwt=[redacted]"],
      ["content-length", "12"],
      ["vary", "accept"],
      ["vary", "origin"],
    ]);
    store.close();
  });

  it("redacts the query's credential parameters and secrets in its other values, leaving the rest as sent", () => {
    const store = createCaptureStore("n1");
    const cap = store.start(start);
    store.tap("acme", "app", [], "q=a%20b&access_token=xyz&X-Amz-Signature=abc&next=fck_0123456789abcdef_c2VjcmV0&flag")!.finish(summary("e1"));
    expect(store.get(cap.captureId).exchanges[0]!.query).toBe("q=a%20b&access_token=%5Bredacted%5D&X-Amz-Signature=%5Bredacted%5D&next=[redacted]&flag");
    store.close();
  });

  it("redacts secrets in the bodies it keeps", () => {
    const store = createCaptureStore("n1", CAPTURE_LIMITS);
    const cap = store.start({ ...start, bodyBytes: 1024 });
    const tap = store.tap("acme", "app", [], "")!;
    tap.requestBody(Buffer.from('{"user":"bob","password":"hunter2"}'));
    tap.responseBody(Buffer.from("your key: fck_0123456789abcdef_c2VjcmV0LXNlY3JldA"));
    tap.finish(summary("e1"));
    const e = store.get(cap.captureId).exchanges[0]!;
    expect(Buffer.from(e.requestBody).toString()).toBe('{"user":"bob","password":"[redacted]"}');
    expect(Buffer.from(e.responseBody).toString()).toBe("your key: [redacted]");
    store.close();
  });
});

describe("capture limits", () => {
  it("keeps exchanges up to exactly its byte cap, then drops the oldest one by one and counts each", () => {
    const store = createCaptureStore("n1", { ...CAPTURE_LIMITS, maxBytesPerCapture: 1024 });
    const cap = store.start(start);
    bare(store, "e1");
    bare(store, "e2");
    let got = store.get(cap.captureId);
    expect([got.exchanges.map((e) => e.summary?.exchangeId), got.capture.bytes, got.capture.exchanges, got.capture.dropped]).toEqual([["e2", "e1"], 1024n, 2, 0n]);
    bare(store, "e3");
    got = store.get(cap.captureId);
    expect([got.exchanges.map((e) => e.summary?.exchangeId), got.capture.bytes, got.capture.exchanges, got.capture.dropped]).toEqual([["e3", "e2"], 1024n, 2, 1n]);
    for (let i = 4; i < 14; i++) bare(store, `e${i}`);
    got = store.get(cap.captureId);
    expect([got.exchanges.map((e) => e.summary?.exchangeId), got.capture.bytes, got.capture.dropped]).toEqual([["e13", "e12"], 1024n, 11n]);
    store.close();
  });

  it("counts bodies, headers and the query against the byte cap", () => {
    const store = createCaptureStore("n1", { ...CAPTURE_LIMITS, maxBytesPerCapture: 1_000_000 });
    const cap = store.start({ ...start, bodyBytes: 100 });
    const tap = store.tap("acme", "app", ["X-A", "12345"], "q=1")!;
    tap.requestBody(Buffer.alloc(300, "a"));
    tap.responseBody(Buffer.alloc(50, "b"));
    tap.responseHead({ "x-b": "678" });
    tap.finish(summary("e1"));
    // 512 + ("x-a" + "12345") + ("x-b" + "678") + "q=1" + 100 + 50
    expect(store.get(cap.captureId).capture.bytes).toBe(BigInt(512 + 8 + 6 + 3 + 100 + 50));
    store.close();
  });

  it("keeps nothing of an exchange larger than the whole cap, and says it dropped it", () => {
    const store = createCaptureStore("n1", { ...CAPTURE_LIMITS, maxBytesPerCapture: 600 });
    const cap = store.start({ ...start, bodyBytes: 1000 });
    bare(store, "small");
    const tap = store.tap("acme", "app", [], "")!;
    tap.requestBody(Buffer.alloc(1000, "a"));
    tap.finish(summary("big"));
    const got = store.get(cap.captureId);
    expect([got.exchanges.length, got.capture.bytes, got.capture.exchanges, got.capture.dropped]).toEqual([0, 0n, 0, 2n]);
    store.close();
  });

  it("taps at most maxInFlight exchanges at once, counts the ones it lets pass, and taps again when one finishes", () => {
    const store = createCaptureStore("n1", { ...CAPTURE_LIMITS, maxInFlight: 3 });
    const cap = store.start(start);
    const taps = [0, 1, 2].map(() => store.tap("acme", "app", [], "")!);
    expect(taps.every(Boolean)).toBe(true);
    expect(store.tap("acme", "app", [], "")).toBeUndefined();
    expect(store.tap("acme", "app", [], "")).toBeUndefined();
    expect(store.get(cap.captureId).capture.dropped).toBe(2n);
    taps[0]!.finish(summary("e0"));
    const again = store.tap("acme", "app", [], "");
    expect(again).toBeDefined();
    expect(store.tap("acme", "app", [], "")).toBeUndefined();
    expect(store.get(cap.captureId).capture.dropped).toBe(3n);
    store.close();
  });

  it("refuses a second capture of the same target as already_exists, naming the one that records it, and allows it once that one stops", () => {
    const store = createCaptureStore("n1");
    const first = store.start(start);
    const err = errorOf(() => store.start({ ...start, actor: "admin:other" }));
    expect(err).toMatchObject({ kind: "already_exists", code: "capture_exists" });
    expect(err.message).toContain(first.captureId);
    // Another tenant's target of the same name is another target.
    expect(store.start({ ...start, tenant: "globex" }).active).toBe(true);
    store.stop(first.captureId);
    expect(store.start(start).captureId).not.toBe(first.captureId);
    store.close();
  });

  it("limits captures recording for one tenant; ended ones do not count", () => {
    const store = createCaptureStore("n1", { ...CAPTURE_LIMITS, maxActivePerTenant: 2 });
    const a = store.start({ ...start, target: "a" });
    store.start({ ...start, target: "b" });
    expect(errorOf(() => store.start({ ...start, target: "c" }))).toMatchObject({ kind: "resource_exhausted", code: "too_many_captures" });
    store.stop(a.captureId);
    expect(store.start({ ...start, target: "c" }).active).toBe(true);
    store.close();
  });

  it("makes room among maxCaptures by forgetting the oldest ended capture, and refuses when all record", () => {
    const store = createCaptureStore("n1", { ...CAPTURE_LIMITS, maxCaptures: 3, maxActivePerTenant: 3 });
    const a = store.start({ ...start, target: "a" });
    const b = store.start({ ...start, target: "b" });
    const c = store.start({ ...start, target: "c" });
    expect(errorOf(() => store.start({ ...start, tenant: "globex" }))).toMatchObject({ kind: "resource_exhausted", code: "too_many_captures" });
    store.stop(b.captureId);
    store.stop(a.captureId);
    // a and b ended; a was started first, so it goes.
    const d = store.start({ ...start, tenant: "globex" });
    expect(store.list().map((x) => x.captureId)).toEqual([d.captureId, c.captureId, b.captureId]);
    expect(() => store.get(a.captureId)).toThrow(/no capture/);
    store.close();
  });
});

describe("capture lifetime", () => {
  it("records until its end to the millisecond, stays readable for keepAfterMs, then is gone", () => {
    let now = 5_000_000;
    const store = createCaptureStore("n1", { ...CAPTURE_LIMITS, keepAfterMs: 1000 }, () => now);
    const cap = store.start({ ...start, durationMs: 500 });
    now += 499;
    expect(store.tap("acme", "app", [], "")).toBeDefined();
    now += 1;
    expect(store.tap("acme", "app", [], "")).toBeUndefined();
    expect(store.get(cap.captureId).capture.active).toBe(false);
    now += 999;
    expect(store.get(cap.captureId).capture.captureId).toBe(cap.captureId);
    now += 1;
    expect(errorOf(() => store.get(cap.captureId))).toMatchObject({ kind: "not_found", code: "capture_not_found" });
    expect(store.list()).toEqual([]);
    store.close();
  });

  it("ends a capture at its end time even when no request comes (list and start see it)", () => {
    let now = 0;
    const store = createCaptureStore("n1", CAPTURE_LIMITS, () => now);
    store.start({ ...start, durationMs: 1000 });
    now = 1000;
    expect(store.list()[0]?.active).toBe(false);
    expect(store.start(start).active).toBe(true);
    store.close();
  });

  it("keeps an exchange tapped while recording that finishes after the end", () => {
    let now = 0;
    const store = createCaptureStore("n1", CAPTURE_LIMITS, () => now);
    const cap = store.start({ ...start, durationMs: 1000 });
    const tap = store.tap("acme", "app", [], "")!;
    now = 2000;
    expect(store.tap("acme", "app", [], "")).toBeUndefined();
    tap.finish(summary("late"));
    expect(store.get(cap.captureId).exchanges.map((e) => e.summary?.exchangeId)).toEqual(["late"]);
    store.close();
  });

  it("stops at once: no more taps, end time now, kept for keepAfterMs from the stop; stopping again changes nothing", () => {
    let now = 10_000;
    const store = createCaptureStore("n1", { ...CAPTURE_LIMITS, keepAfterMs: 1000 }, () => now);
    const cap = store.start({ ...start, durationMs: 60_000 });
    now += 100;
    const stopped = store.stop(cap.captureId);
    expect(stopped.active).toBe(false);
    expect(timestampMs(stopped.endTime!)).toBe(10_100);
    expect(timestampMs(stopped.expireTime!)).toBe(11_100);
    expect(store.tap("acme", "app", [], "")).toBeUndefined();
    now += 500;
    expect(timestampMs(store.stop(cap.captureId).endTime!)).toBe(10_100);
    now = 11_100;
    expect(() => store.stop(cap.captureId)).toThrow(/no capture/);
    store.close();
  });

  it("forgets a deleted tenant's captures, recording or ended, and nothing of the other tenants", () => {
    const store = createCaptureStore("n1");
    const ended = store.start({ ...start, target: "old" });
    store.stop(ended.captureId);
    const recording = store.start(start);
    const other = store.start({ ...start, tenant: "globex" });
    store.forgetTenant("acme");
    expect(store.tap("acme", "app", [], "")).toBeUndefined();
    expect(() => store.get(recording.captureId)).toThrow(/no capture/);
    expect(() => store.get(ended.captureId)).toThrow(/no capture/);
    expect(store.list("acme")).toEqual([]);
    expect(store.tap("globex", "app", [], "")).toBeDefined();
    expect(store.list().map((c) => c.captureId)).toEqual([other.captureId]);
    // The tenant, made again, starts from nothing.
    expect(store.start(start).active).toBe(true);
    store.close();
  });

  it("lists newest first, per tenant when asked, and finds one exchange by id", () => {
    const store = createCaptureStore("n1");
    const a = store.start(start);
    const b = store.start({ ...start, target: "b" });
    const g = store.start({ ...start, tenant: "globex" });
    expect(store.list().map((c) => c.captureId)).toEqual([g.captureId, b.captureId, a.captureId]);
    expect(store.list("acme").map((c) => c.captureId)).toEqual([b.captureId, a.captureId]);
    bare(store, "e1");
    expect(store.exchange(a.captureId, "e1").exchange.summary?.exchangeId).toBe("e1");
    expect(errorOf(() => store.exchange(a.captureId, "nope"))).toMatchObject({ kind: "not_found", code: "exchange_not_found" });
    expect(errorOf(() => store.exchange(a.captureId, "x".repeat(5000))).message!.length).toBeLessThan(200);
    store.close();
  });

  it("clears its sweep timer on close", () => {
    vi.useFakeTimers();
    try {
      const store = createCaptureStore("n1");
      expect(vi.getTimerCount()).toBe(1);
      store.close();
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("capture ids of other nodes", () => {
  it("names the node for an id of another node's shape, and not for this node's own ids", () => {
    const store = createCaptureStore("n1");
    expect(errorOf(() => store.get("relay-eu_2-0123456789ab")).message).toMatch(/kept by node "relay-eu_2"/);
    expect(errorOf(() => store.get("n1-0123456789ab")).message).toMatch(/there is no capture "n1-0123456789ab"/);
    // Not of the shape (upper-case hex, 11 hex digits, a dot in the node): no node is named.
    for (const id of ["n2-0123456789AB", "n2-0123456789a", "a.b-0123456789ab", "-0123456789ab"]) expect(errorOf(() => store.get(id)).message).toMatch(/there is no capture/);
    store.close();
  });

  it("does not echo a huge capture id back", () => {
    const store = createCaptureStore("n1");
    expect(errorOf(() => store.stop("z".repeat(100_000))).message!.length).toBeLessThan(200);
    store.close();
  });

  it("names node relay-2 for a capture id relay-2-<hex> on node relay (a node id that is a prefix of another)", () => {
    // Node ids may hold '-', so "relay-2-…" starts with "relay-" and is taken for one of this node's own ids.
    const store = createCaptureStore("relay");
    expect(errorOf(() => store.get("relay-2-0123456789ab")).message).toMatch(/kept by node "relay-2"/);
    store.close();
  });
});
