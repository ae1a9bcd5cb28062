import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
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
