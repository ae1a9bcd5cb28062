import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HostileConnector } from "../helpers/hostile-connector.js";
import { startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { until } from "../helpers/wait.js";

// Finding 7: one connector key opened 800 tunnels with 1,000 targets each, and every connect and disconnect
// wrote a large audit record and log line. Tunnels per key and per tenant, targets per tunnel and the rate of
// opening are bounded now, and what a connect records is small.
let relay: TestRelay;
const open: HostileConnector[] = [];
const RESOURCE_EXHAUSTED = 8;

beforeAll(async () => {
  relay = await startTestRelay({ limits: { maxTunnelsPerKey: 2, maxTunnelsPerTenant: 3, maxTargetsPerTunnel: 40 } });
});

afterAll(async () => {
  for (const c of open) c.destroy();
  await relay?.close();
});

async function tunnel(key: string, hello: Parameters<typeof HostileConnector.connect>[2] = {}): Promise<HostileConnector> {
  const c = await HostileConnector.connect(relay.url, key, hello);
  open.push(c);
  return c;
}

const limited = (name: string) => relay.relay.faults.limits().get(name) ?? 0;

async function audit(tenant: string) {
  return (await relay.admin.listAuditEvents({ pageSize: 1000 })).events.filter((e) => e.tenant === tenant);
}

describe("tunnel limits", () => {
  it("refuses a key's tunnel beyond maxTunnelsPerKey, and a tenant's beyond maxTunnelsPerTenant", async () => {
    const k1 = await relay.tenantWithKey("many");
    const k2 = await relay.tenantWithKey("many");
    expect((await tunnel(k1)).welcome).toBeDefined();
    expect((await tunnel(k1)).welcome).toBeDefined();
    const before = limited("maxTunnelsPerKey");
    const third = await tunnel(k1);
    expect(third.welcome).toBeUndefined();
    expect(await third.ended).toEqual({ grpcStatus: RESOURCE_EXHAUSTED, grpcMessage: expect.stringMatching(/already has 2 tunnels on this relay node \(at most 2\)/) });
    expect(limited("maxTunnelsPerKey")).toBe(before + 1);
    // Another key of the tenant gets the tenant's last place, then the tenant is full.
    expect((await tunnel(k2)).welcome).toBeDefined();
    const fourth = await tunnel(k2);
    expect(await fourth.ended).toMatchObject({ grpcStatus: RESOURCE_EXHAUSTED, grpcMessage: expect.stringMatching(/tenant "many" already has 3 tunnels/) });
    expect(limited("maxTunnelsPerTenant")).toBe(1);
    expect(relay.relay.registry.tunnels("many")).toHaveLength(3);
    const refused = (await audit("many")).filter((e) => e.action === "connector.refused");
    expect(refused.map((e) => e.details?.reason).sort()).toEqual(["too many tunnels for the credential", "too many tunnels for the tenant"]);
    expect(refused.every((e) => e.details?.remoteAddress === "127.0.0.1")).toBe(true);
    // A probe counts too: it is a tunnel the key holds.
    for (const c of open.splice(0)) c.destroy();
    await until(() => relay.relay.registry.held("many").length === 0);
    const k3 = await relay.tenantWithKey("many");
    expect((await tunnel(k3, { targets: [], probe: true })).welcome).toBeDefined();
    expect((await tunnel(k3)).welcome).toBeDefined();
    expect(await (await tunnel(k3)).ended).toMatchObject({ grpcStatus: RESOURCE_EXHAUSTED });
    for (const c of open.splice(0)) c.destroy();
  });

  it("refuses a Hello with more than maxTargetsPerTunnel targets, and records only a few of a long list", async () => {
    const key = await relay.tenantWithKey("wide");
    const names = (n: number) => Array.from({ length: n }, (_, i) => ({ name: `t${i}` }));
    const c = await tunnel(key, { targets: names(41) });
    expect(await c.ended).toEqual({ grpcStatus: RESOURCE_EXHAUSTED, grpcMessage: "Hello lists 41 targets; this relay takes at most 40 per tunnel" });
    expect(limited("maxTargetsPerTunnel")).toBe(1);
    const ok = await tunnel(key, { targets: names(40) });
    expect(ok.welcome).toBeDefined();
    const connect = (await audit("wide")).find((e) => e.action === "connector.connect");
    expect(connect?.details?.targets).toEqual(names(16).map((t) => t.name));
    expect(connect?.details?.targetCount).toBe(40);
    expect(JSON.stringify(connect?.details).length).toBeLessThan(1000);
    ok.destroy();
  });

  it("bounds how fast one key opens tunnels: a reconnect loop fills neither the registry nor the audit trail", async () => {
    const key = await relay.tenantWithKey("loop");
    const other = await relay.tenantWithKey("calm");
    const outcomes: Array<number | undefined> = [];
    for (let i = 0; i < 30; i++) {
      const c = await tunnel(key);
      if (c.welcome) {
        outcomes.push(0);
        c.destroy();
        await until(() => relay.relay.registry.tunnels("loop").length === 0);
      } else {
        const end = await c.ended;
        outcomes.push(end.grpcStatus);
        if (i === 29) expect(end.grpcMessage).toMatch(/opens tunnels too fast \(at most 2 a minute\): retry in \d+s/);
      }
    }
    // The burst is twice maxTunnelsPerKey; then the bucket refills at maxTunnelsPerKey a minute.
    expect(outcomes.filter((o) => o === 0)).toHaveLength(4);
    expect(outcomes.slice(4).every((o) => o === RESOURCE_EXHAUSTED)).toBe(true);
    expect(limited("tunnelOpenRate")).toBe(26);
    const events = await audit("loop");
    expect(events.filter((e) => e.action === "connector.connect")).toHaveLength(4);
    // Refusals from one address are recorded a few at a time, with how many were left out.
    expect(events.filter((e) => e.action === "connector.refused").length).toBeLessThanOrEqual(10);
    // Another key (another tenant) is not held back by it.
    expect((await tunnel(other)).welcome).toBeDefined();
  });
});
