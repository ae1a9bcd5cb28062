import { describe, expect, it } from "vitest";
import { createLogger } from "../../core/logger.js";
import { createPeerFaults } from "../../services/limits/peer-faults.js";
import { MIN_CLIENT_SHARE, withLimits } from "../../services/limits/limits.js";
import { sourceKey } from "../../services/auth/source-key.js";
import { createTenantLoad } from "../../services/gateway/tenant-load.js";

// A tenant limit of 40 and a share of 50%: 20 exchanges per source.
const setup = (limits = { tenantMaxExchanges: 40, clientSharePercent: 50, tenantBufferBytes: 1000 }) => {
  const faults = createPeerFaults(createLogger({ level: "silent" }));
  return { load: createTenantLoad(withLimits(limits), faults), faults };
};
type Load = ReturnType<typeof setup>["load"];
const admitMany = (load: Load, tenant: string, limit: number, address: string, n: number) => {
  for (let i = 0; i < n; i++) load.admit(tenant, limit, address);
};
const code = (fn: () => unknown) => {
  try {
    fn();
    return "admitted";
  } catch (err) {
    return (err as { code: string }).code;
  }
};

describe("tenant load", () => {
  it("applies limits.tenantMaxExchanges to a tenant without its own limit, and the tenant's own when it has one", () => {
    const { load, faults } = setup();
    admitMany(load, "acme", 0, "10.0.0.1", 20);
    admitMany(load, "acme", 0, "10.0.0.2", 20);
    expect(code(() => load.admit("acme", 0, "10.0.0.3"))).toBe("tenant_busy");
    expect(faults.limits().get("tenantMaxExchanges")).toBe(1);
    for (let i = 1; i <= 6; i++) load.admit("big", 6, `10.0.0.${i}`);
    expect(code(() => load.admit("big", 6, "10.0.0.7"))).toBe("tenant_busy");
    expect(faults.limits().get("maxConcurrentExchanges")).toBe(1);
  });

  it("gives one source its share of the limit, counted per tenant", () => {
    const { load, faults } = setup();
    admitMany(load, "acme", 0, "10.0.0.1", 20);
    expect(code(() => load.admit("acme", 0, "10.0.0.1"))).toBe("client_busy");
    expect(faults.limits().get("clientSharePercent")).toBe(1);
    expect(code(() => load.admit("acme", 0, "10.0.0.2"))).toBe("admitted");
    expect(code(() => load.admit("other", 0, "10.0.0.1"))).toBe("admitted");
    // A limit of 1 still admits one: the share is never zero.
    expect(code(() => load.admit("tiny", 1, "10.0.0.1"))).toBe("admitted");
  });

  it(`never cuts a source below ${MIN_CLIENT_SHARE} exchanges (a browser's page load), nor above the tenant's limit`, () => {
    const { load } = setup();
    // 50% of 20 would be 10.
    admitMany(load, "small", 20, "10.0.0.1", MIN_CLIENT_SHARE);
    expect(code(() => load.admit("small", 20, "10.0.0.1"))).toBe("client_busy");
    // A limit below the floor: one source may use all of it.
    admitMany(load, "tiny", 3, "10.0.0.1", 3);
    expect(code(() => load.admit("tiny", 3, "10.0.0.1"))).toBe("tenant_busy");
  });

  it("frees the place on release, once", () => {
    const { load } = setup();
    admitMany(load, "acme", 0, "10.0.0.1", 18);
    const a = load.admit("acme", 0, "10.0.0.1");
    const b = load.admit("acme", 0, "10.0.0.1");
    expect(load.activeFor("acme")).toBe(20);
    expect(code(() => load.admit("acme", 0, "10.0.0.1"))).toBe("client_busy");
    a.release();
    a.release();
    expect(load.activeFor("acme")).toBe(19);
    expect(code(() => load.admit("acme", 0, "10.0.0.1"))).toBe("admitted");
    b.release();
    expect(load.activeFor("acme")).toBe(19);
  });

  it("shares one byte budget between a tenant's exchanges, each source a share of it, all of it given back once none is in progress", () => {
    // 64 KiB of buffer for the tenant; a source's share is 25% but never below 16 full windows: here all of it.
    const { load, faults } = setup({ tenantMaxExchanges: 40, clientSharePercent: 50, tenantBufferBytes: 64 * 1024 });
    const a = load.admit("acme", 0, "10.0.0.1");
    const a2 = load.admit("acme", 0, "10.0.0.1");
    const b = load.admit("acme", 0, "10.0.0.2");
    const other = load.admit("other", 0, "10.0.0.1");
    expect(a.budget).toBe(a2.budget);
    expect(a.budget.take(64 * 1024)).toBe(true);
    expect(b.budget.take(1)).toBe(false);
    expect(faults.limits().get("tenantBufferBytes")).toBe(1);
    expect(other.budget.take(64 * 1024)).toBe(true);
    a.budget.give(64 * 1024);
    expect(b.budget.take(1)).toBe(true);
    b.budget.give(1);
    for (const x of [a, a2, b]) x.release();
    expect(load.admit("acme", 0, "10.0.0.1").budget.used).toBe(0);
  });

  it("keeps one source to its share of the tenant's buffer, so others still get theirs", () => {
    const MiB = 1024 * 1024;
    // 256 MiB for the tenant, 25% a source: 64 MiB each.
    const { load, faults } = setup({ tenantMaxExchanges: 40, clientSharePercent: 25, tenantBufferBytes: 256 * MiB });
    const greedy = load.admit("acme", 0, "10.0.0.1");
    expect(greedy.budget.take(64 * MiB)).toBe(true);
    expect(greedy.budget.take(1)).toBe(false);
    expect(faults.limits().get("clientSharePercent")).toBe(1);
    expect(load.admit("acme", 0, "10.0.0.2").budget.take(64 * MiB)).toBe(true);
  });

  it("counts an IPv6 /64 as one source", () => {
    const { load } = setup();
    admitMany(load, "acme", 0, "2001:db8:1:2::a", 10);
    admitMany(load, "acme", 0, "2001:db8:1:2:ffff::b", 10);
    expect(code(() => load.admit("acme", 0, "2001:db8:1:2::c"))).toBe("client_busy");
    expect(code(() => load.admit("acme", 0, "2001:db8:1:3::a"))).toBe("admitted");
  });
});

describe("sourceKey", () => {
  it.each([
    ["203.0.113.7", "203.0.113.7"],
    ["::ffff:203.0.113.7", "203.0.113.7"],
    ["2001:db8::1", "2001:db8:0:0::/64"],
    ["2001:0DB8:0000:0000:1:2:3:4", "2001:db8:0:0::/64"],
    ["2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"],
    ["fe80::1%eth0", "fe80:0:0:0::/64"],
    ["::1", "0:0:0:0::/64"],
  ])("%s is source %s", (address, key) => {
    expect(sourceKey(address)).toBe(key);
  });
});
