import { describe, expect, it } from "vitest";
import { createSourceBackoff, sourceKey } from "../../services/auth/source-backoff.js";

describe("source back-off", () => {
  it("lets a few failures through, then waits 1 s doubling up to the cap; waiting does not lengthen it", () => {
    let now = 0;
    const b = createSourceBackoff({ authFailuresBeforeBackoff: 3, authBackoffMaxMs: 5_000 }, { now: () => now });
    expect([b.failed("10.0.0.1"), b.failed("10.0.0.1")]).toEqual([0, 0]);
    expect(b.waitMs("10.0.0.1")).toBe(0);
    expect(b.failed("10.0.0.1")).toBe(1_000);
    expect(b.waitMs("10.0.0.1")).toBe(1_000);
    now = 400;
    expect(b.waitMs("10.0.0.1")).toBe(600);
    now = 1_000;
    expect(b.waitMs("10.0.0.1")).toBe(0);
    expect(b.failed("10.0.0.1")).toBe(2_000);
    now = 3_000;
    expect(b.failed("10.0.0.1")).toBe(4_000);
    now = 7_000;
    expect(b.failed("10.0.0.1")).toBe(5_000); // capped
    expect(b.waitMs("10.0.0.2")).toBe(0); // another source is not affected
  });

  it("starts a source over on success, and forgets one that has stopped failing", () => {
    let now = 0;
    const b = createSourceBackoff({ authFailuresBeforeBackoff: 1, authBackoffMaxMs: 60_000 }, { now: () => now });
    b.failed("10.0.0.1");
    expect(b.waitMs("10.0.0.1")).toBe(1_000);
    b.succeeded("10.0.0.1");
    expect(b.waitMs("10.0.0.1")).toBe(0);
    expect(b.size).toBe(0);
    for (let i = 0; i < 10; i++) b.failed("10.0.0.3");
    now = 16 * 60_000;
    expect(b.failed("10.0.0.3")).toBe(1_000); // first failure of a fresh start
  });

  it("keeps at most maxSources, the least recently failed going first", () => {
    const b = createSourceBackoff({ authFailuresBeforeBackoff: 1, authBackoffMaxMs: 60_000 }, { maxSources: 2, now: () => 0 });
    b.failed("10.0.0.1");
    b.failed("10.0.0.2");
    b.failed("10.0.0.1");
    b.failed("10.0.0.3");
    expect(b.size).toBe(2);
    expect(b.waitMs("10.0.0.2")).toBe(0);
    expect(b.waitMs("10.0.0.1")).toBeGreaterThan(0);
    expect(b.waitMs("10.0.0.3")).toBeGreaterThan(0);
  });

  it("holds an IPv6 source by its /64, and no source without an address", () => {
    const b = createSourceBackoff({ authFailuresBeforeBackoff: 1, authBackoffMaxMs: 60_000 }, { now: () => 0 });
    b.failed("2001:db8:aa:bb::1");
    expect(b.waitMs("2001:db8:aa:bb:1234:5678:9abc:def0")).toBe(1_000);
    expect(b.waitMs("2001:db8:aa:bc::1")).toBe(0);
    b.failed("");
    expect(b.waitMs("")).toBe(0);
  });
});

describe("sourceKey", () => {
  it.each([
    ["127.0.0.1", "127.0.0.1"],
    ["::ffff:127.0.0.2", "127.0.0.2"],
    ["::1", "0:0:0:0::/64"],
    ["2001:DB8:0:1::5", "2001:db8:0:1::/64"],
    ["2001:db8:0001:0002:3:4:5:6", "2001:db8:1:2::/64"],
    ["fe80::1%eth0", "fe80:0:0:0::/64"],
    ["64:ff9b::192.0.2.1", "64:ff9b:0:0::/64"],
    ["", undefined],
  ])("%s -> %s", (address, key) => {
    expect(sourceKey(address)).toBe(key);
  });
});
