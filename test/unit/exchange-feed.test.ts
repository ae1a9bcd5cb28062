import { create } from "@bufbuild/protobuf";
import { describe, expect, it, vi } from "vitest";
import { ExchangeSummarySchema } from "../../gen/ferry/admin/v1/admin_service_pb.js";
import { checkStatusFilter, createExchangeFeed, type FeedFilter, type FeedItem, matches } from "../../services/traffic/exchange-feed.js";

const ex = (n: number, over: Partial<{ tenant: string; target: string; status: number; code: string }> = {}) =>
  create(ExchangeSummarySchema, { tenant: "acme", target: "app", status: 200, requestId: `r${n}`, ...over });
const all: FeedFilter = { tenant: "", target: "", status: "" };

describe("exchange feed filters", () => {
  it.each([
    ["", 200, "", true],
    ["2xx", 204, "", true],
    ["2xx", 404, "", false],
    ["4xx", 404, "target_not_found", true],
    ["404", 404, "", true],
    ["404", 403, "", false],
    ["error", 502, "target_unreachable", true],
    ["error", 502, "", false],
  ])("status %s matches %i (code %s): %s", (status, code, ferry, expected) => {
    expect(matches({ ...all, status }, ex(0, { status: code, code: ferry }))).toBe(expected);
  });

  it("matches tenant and target exactly", () => {
    expect(matches({ ...all, tenant: "acme" }, ex(0))).toBe(true);
    expect(matches({ ...all, tenant: "acm" }, ex(0))).toBe(false);
    expect(matches({ ...all, target: "app" }, ex(0, { target: "other" }))).toBe(false);
  });

  it("refuses status filters it would never match", () => {
    for (const ok of ["", "2xx", "5xx", "404", "error"]) expect(() => checkStatusFilter(ok)).not.toThrow();
    for (const bad of ["6xx", "xx", "40", "4044", "Error", "2XX", " 404"]) expect(() => checkStatusFilter(bad)).toThrow(/is not 2xx/);
  });
});

describe("exchange feed", () => {
  it("says at once that the watch is in place, then hands over what waited, in order, in one item", async () => {
    const feed = createExchangeFeed();
    const abort = new AbortController();
    const it = feed.watch(all, abort.signal);
    expect((await it.next()).value).toEqual({ exchanges: [], dropped: 0 });
    expect(feed.watched).toBe(true);
    feed.publish(ex(1));
    feed.publish(ex(2));
    const ids = async () => ((await it.next()).value as FeedItem).exchanges.map((e) => e.requestId);
    expect(await ids()).toEqual(["r1", "r2"]);
    feed.publish(ex(3));
    expect(await ids()).toEqual(["r3"]);
    abort.abort();
    expect((await it.next()).done).toBe(true);
    expect(feed.watched).toBe(false);
  });

  it("keeps at most its queue for a watcher that does not read, and tells it exactly how many it missed", async () => {
    const feed = createExchangeFeed({ queueLength: 3 });
    const abort = new AbortController();
    const it = feed.watch(all, abort.signal);
    await it.next();
    for (let i = 0; i < 10; i++) feed.publish(ex(i));
    const got = (await it.next()).value as FeedItem;
    expect(got.exchanges.map((e) => e.requestId)).toEqual(["r0", "r1", "r2"]);
    expect(got.dropped).toBe(7);
    feed.publish(ex(10));
    expect((await it.next()).value).toMatchObject({ dropped: 0 });
    abort.abort();
  });

  it("refuses watchers beyond its limit and counts them as they come and go", async () => {
    const feed = createExchangeFeed({ maxWatchers: 1 });
    const counts: number[] = [];
    feed.onWatchers((n) => counts.push(n));
    const abort = new AbortController();
    const first = feed.watch(all, abort.signal);
    await first.next();
    await expect(feed.watch(all, new AbortController().signal).next()).rejects.toThrow(/serves 1 traffic watchers/);
    abort.abort();
    await first.next();
    expect(counts).toEqual([1, 0]);
  });

  it("sends a keep-alive when nothing happens", async () => {
    const feed = createExchangeFeed({ keepAliveMs: 20 });
    const abort = new AbortController();
    const it = feed.watch(all, abort.signal);
    await it.next();
    expect((await it.next()).value).toEqual({ exchanges: [], dropped: 0 });
    abort.abort();
  });
});

// What an operator relies on and what a slow or hostile watcher must not get past: every class boundary, the exact
// count of what a watcher missed, the watcher limit, and that nothing of a watcher stays behind once it is gone.

const next = async (it: AsyncGenerator<FeedItem>) => (await it.next()).value as FeedItem;
const ids = (item: FeedItem) => item.exchanges.map((e) => e.requestId);

describe("exchange feed filters, at their edges", () => {
  it.each([
    ["1xx", 100, true],
    ["1xx", 199, true],
    ["1xx", 200, false],
    ["2xx", 199, false],
    ["2xx", 299, true],
    ["3xx", 304, true],
    ["4xx", 499, true],
    ["4xx", 500, false],
    ["5xx", 500, true],
    ["5xx", 599, true],
    ["200", 200, true],
    ["200", 201, false],
  ])("status filter %s against %i: %s", (status, code, expected) => {
    expect(matches({ ...all, status }, ex(0, { status: code }))).toBe(expected);
  });

  it("matches no status class for an exchange whose client went away before an answer (status 0)", () => {
    for (const status of ["1xx", "2xx", "3xx", "4xx", "5xx", "200"]) expect(matches({ ...all, status }, ex(0, { status: 0 }))).toBe(false);
    expect(matches({ ...all, status: "error" }, ex(0, { status: 0, code: "client_gone" }))).toBe(true);
  });

  it("takes 'error' as Ferry failed it, whatever the status, and never a target's own 5xx", () => {
    expect(matches({ ...all, status: "error" }, ex(0, { status: 404, code: "no_connector" }))).toBe(true);
    expect(matches({ ...all, status: "error" }, ex(0, { status: 500 }))).toBe(false);
    expect(matches({ ...all, status: "5xx" }, ex(0, { status: 503, code: "connector_busy" }))).toBe(true);
  });

  it("needs tenant, target and status to match all at once", () => {
    const f: FeedFilter = { tenant: "acme", target: "app", status: "2xx" };
    expect(matches(f, ex(0))).toBe(true);
    expect(matches(f, ex(0, { tenant: "globex" }))).toBe(false);
    expect(matches(f, ex(0, { target: "api" }))).toBe(false);
    expect(matches(f, ex(0, { status: 500 }))).toBe(false);
    // Exact, not by prefix or case.
    expect(matches({ ...all, tenant: "acme" }, ex(0, { tenant: "acme-eu" }))).toBe(false);
    expect(matches({ ...all, target: "App" }, ex(0))).toBe(false);
  });

  it.each(["1xx", "2xx", "3xx", "4xx", "5xx", "100", "200", "404", "599"])("accepts the status filter %s", (s) => expect(() => checkStatusFilter(s)).not.toThrow());

  it.each(["0", "099", "600", "999", "6xx", "0xx", "4x", "4XX", "ERROR", "errors", "200 ", "2xx,5xx", "-1", "4xx\n", "404\u0000"])(
    "refuses the status filter %j as invalid_argument",
    (s) => {
      let thrown: unknown;
      try {
        checkStatusFilter(s);
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toMatchObject({ kind: "invalid_argument", code: "invalid_status_filter" });
    },
  );

  it("does not echo a huge status filter back in its refusal", () => {
    expect(() => checkStatusFilter("x".repeat(10_000))).toThrow(/^status "x{20}" is not/);
  });
});

describe("exchange feed watchers", () => {
  it("is not watched until the first item is pulled, and the first item comes before any exchange", async () => {
    const feed = createExchangeFeed();
    const counts: number[] = [];
    feed.onWatchers((n) => counts.push(n));
    const abort = new AbortController();
    const it = feed.watch(all, abort.signal);
    expect(feed.watched).toBe(false);
    expect(await next(it)).toEqual({ exchanges: [], dropped: 0 });
    expect(feed.watched).toBe(true);
    expect(counts).toEqual([1]);
    abort.abort();
    expect((await it.next()).done).toBe(true);
    expect(counts).toEqual([1, 0]);
  });

  it("hands a filtered watcher only what matches, and counts as dropped only what matched", async () => {
    const feed = createExchangeFeed({ queueLength: 2 });
    const abort = new AbortController();
    const it = feed.watch({ ...all, status: "5xx" }, abort.signal);
    await next(it);
    for (let i = 0; i < 10; i++) feed.publish(ex(i, { status: 200 }));
    feed.publish(ex(10, { status: 500 }));
    feed.publish(ex(11, { status: 200 }));
    feed.publish(ex(12, { status: 502 }));
    feed.publish(ex(13, { status: 503 }));
    const item = await next(it);
    expect([ids(item), item.dropped]).toEqual([["r10", "r12"], 1]);
    abort.abort();
  });

  it("keeps a non-reading watcher to its queue however much traffic comes, and tells it the exact number it missed", async () => {
    const feed = createExchangeFeed();
    const abort = new AbortController();
    const it = feed.watch(all, abort.signal);
    await next(it);
    for (let i = 0; i < 100_000; i++) feed.publish(ex(i));
    const item = await next(it);
    expect(item.exchanges).toHaveLength(256);
    expect(ids(item).slice(0, 2)).toEqual(["r0", "r1"]);
    expect(item.dropped).toBe(100_000 - 256);
    abort.abort();
  });

  it("counts drops again from zero after each item, exactly, also while the reader holds an item", async () => {
    const feed = createExchangeFeed({ queueLength: 4 });
    const abort = new AbortController();
    const it = feed.watch(all, abort.signal);
    await next(it);
    for (let i = 0; i < 6; i++) feed.publish(ex(i));
    const first = await next(it);
    expect([ids(first), first.dropped]).toEqual([["r0", "r1", "r2", "r3"], 2]);
    // The reader has not asked again: this is the next item's share, as bounded as the first.
    for (let i = 6; i < 15; i++) feed.publish(ex(i));
    const second = await next(it);
    expect([ids(second), second.dropped]).toEqual([["r6", "r7", "r8", "r9"], 5]);
    feed.publish(ex(15));
    const third = await next(it);
    expect([ids(third), third.dropped]).toEqual([["r15"], 0]);
    abort.abort();
  });

  it("gives each watcher its own queue: a slow one loses exchanges, a fast one none", async () => {
    const feed = createExchangeFeed({ queueLength: 2 });
    const slowAbort = new AbortController();
    const fastAbort = new AbortController();
    const slow = feed.watch(all, slowAbort.signal);
    const fast = feed.watch(all, fastAbort.signal);
    await next(slow);
    await next(fast);
    const got: string[] = [];
    for (let i = 0; i < 6; i++) {
      feed.publish(ex(i));
      got.push(...ids(await next(fast)));
    }
    expect(got).toEqual(["r0", "r1", "r2", "r3", "r4", "r5"]);
    expect(await next(slow)).toMatchObject({ dropped: 4 });
    slowAbort.abort();
    fastAbort.abort();
  });

  it("refuses a watcher beyond maxWatchers as resource_exhausted without counting it, and takes one again when a place is free", async () => {
    const feed = createExchangeFeed({ maxWatchers: 2 });
    const counts: number[] = [];
    feed.onWatchers((n) => counts.push(n));
    const a = new AbortController();
    const b = new AbortController();
    const first = feed.watch(all, a.signal);
    const second = feed.watch(all, b.signal);
    await next(first);
    await next(second);
    await expect(feed.watch(all, new AbortController().signal).next()).rejects.toMatchObject({ kind: "resource_exhausted", code: "too_many_watchers" });
    expect(counts).toEqual([1, 2]);
    a.abort();
    expect((await first.next()).done).toBe(true);
    const c = new AbortController();
    const third = feed.watch(all, c.signal);
    expect(await next(third)).toEqual({ exchanges: [], dropped: 0 });
    b.abort();
    c.abort();
    await second.next();
    await third.next();
    expect(counts).toEqual([1, 2, 1, 2, 1, 0]);
    expect(feed.watched).toBe(false);
  });

  it("ends a watcher waiting for exchanges as soon as its call is aborted, not at the next keep-alive", async () => {
    vi.useFakeTimers();
    try {
      const feed = createExchangeFeed();
      const counts: number[] = [];
      feed.onWatchers((n) => counts.push(n));
      const abort = new AbortController();
      const it = feed.watch(all, abort.signal);
      await next(it);
      const pending = it.next();
      abort.abort();
      expect((await pending).done).toBe(true);
      expect(counts).toEqual([1, 0]);
      // No keep-alive timer is left behind for a watcher that is gone.
      expect(vi.getTimerCount()).toBe(0);
      feed.publish(ex(1));
    } finally {
      vi.useRealTimers();
    }
  });

  it("removes a watcher whose reader stops iterating (for await ... break), without an abort", async () => {
    const feed = createExchangeFeed();
    const counts: number[] = [];
    feed.onWatchers((n) => counts.push(n));
    for await (const item of feed.watch(all, new AbortController().signal)) {
      expect(item.exchanges).toEqual([]);
      break;
    }
    expect(counts).toEqual([1, 0]);
    expect(feed.watched).toBe(false);
  });

  it("lets a watcher aborted while its reader holds an item go at its next read, with what was queued thrown away", async () => {
    const feed = createExchangeFeed();
    const counts: number[] = [];
    feed.onWatchers((n) => counts.push(n));
    const abort = new AbortController();
    const it = feed.watch(all, abort.signal);
    await next(it);
    feed.publish(ex(1));
    abort.abort();
    expect((await it.next()).done).toBe(true);
    expect(counts).toEqual([1, 0]);
  });

  it("ends a watch whose call was aborted before it began", async () => {
    const feed = createExchangeFeed();
    const counts: number[] = [];
    feed.onWatchers((n) => counts.push(n));
    const abort = new AbortController();
    abort.abort();
    let items = 0;
    for await (const _ of feed.watch(all, abort.signal)) items++;
    expect(items).toBeLessThanOrEqual(1);
    expect(counts.at(-1)).toBe(0);
    expect(feed.watched).toBe(false);
  });

  it("publishes to nobody without a fault when no one watches", () => {
    const feed = createExchangeFeed();
    expect(() => feed.publish(ex(1))).not.toThrow();
    expect(feed.watched).toBe(false);
  });
});

describe("exchange feed keep-alive", () => {
  it("sends an empty item after keepAliveMs without an exchange, not a millisecond before, and again after each", async () => {
    vi.useFakeTimers();
    try {
      const feed = createExchangeFeed({ keepAliveMs: 15_000 });
      const abort = new AbortController();
      const it = feed.watch(all, abort.signal);
      await next(it);
      let item: FeedItem | undefined;
      const wait = () => {
        item = undefined;
        void next(it).then((v) => (item = v));
      };
      wait();
      await vi.advanceTimersByTimeAsync(14_999);
      expect(item).toBeUndefined();
      await vi.advanceTimersByTimeAsync(1);
      expect(item).toEqual({ exchanges: [], dropped: 0 });
      // An exchange comes at once, and the next keep-alive is counted from it.
      wait();
      await vi.advanceTimersByTimeAsync(10_000);
      feed.publish(ex(1));
      await vi.advanceTimersByTimeAsync(0);
      expect(item && ids(item)).toEqual(["r1"]);
      wait();
      await vi.advanceTimersByTimeAsync(14_999);
      expect(item).toBeUndefined();
      await vi.advanceTimersByTimeAsync(1);
      expect(item).toEqual({ exchanges: [], dropped: 0 });
      abort.abort();
      await it.next();
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});
