import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { json, request } from "../helpers/http.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";

let relay: TestRelay;
const targets: TestTarget[] = [];
const connectors: Connector[] = [];
let keyA: string;
let keyB: string;

beforeAll(async () => {
  relay = await startTestRelay();
  keyA = await relay.tenantWithKey("tenant-a");
  keyB = await relay.tenantWithKey("tenant-b");
});

afterAll(async () => {
  await Promise.all(connectors.map((c) => c.stop()));
  await relay?.close();
  await Promise.all(targets.map((t) => t.close()));
});

async function target(name: string): Promise<TestTarget> {
  const t = await startTestTarget(name);
  targets.push(t);
  return t;
}

async function connector(key: string, map: Record<string, string>): Promise<Connector> {
  const c = await startTestConnector(relay.url, key, map, { tunnels: 1 });
  connectors.push(c);
  return c;
}

describe("tenant isolation", () => {
  it("a tenant cannot reach another tenant's targets, even with a target of the same name", async () => {
    const secretOfB = await target("b-secret");
    const appOfA = await target("a-app");
    await connector(keyB, { secret: secretOfB.url });
    await connector(keyA, { app: appOfA.url });

    const viaA = await request(`${relay.url}/relay/tenant-a/secret/json`);
    expect(viaA.status).toBe(404);
    expect(json<{ error: { code: string } }>(viaA).error.code).toBe("target_not_found");
    expect(secretOfB.seen).toHaveLength(0);

    // A connector holding tenant A's key advertises "secret" too: it serves tenant A only.
    const impostor = await target("impostor");
    await connector(keyA, { secret: impostor.url });
    for (let i = 0; i < 20; i++) {
      const r = await request(`${relay.url}/relay/tenant-b/secret/json`);
      expect(json(r).target).toBe("b-secret");
    }
    expect(impostor.seen).toHaveLength(0);
    expect(json((await request(`${relay.url}/relay/tenant-a/secret/json`))).target).toBe("impostor");
  });

  it("admin calls cannot touch another tenant's keys", async () => {
    const { keys } = await relay.admin.listKeys({ tenant: "tenant-b" });
    const err = await relay.admin.revokeKey({ tenant: "tenant-a", keyId: keys[0]!.keyId }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.NotFound);
    const still = await relay.admin.listKeys({ tenant: "tenant-b" });
    expect(still.keys[0]!.revokeTime).toBeUndefined();
  });
});

describe("load sharing", () => {
  it("spreads a tenant's exchanges over every connector that serves the target", async () => {
    const key = await relay.tenantWithKey("shared");
    const one = await target("one");
    const two = await target("two");
    await connector(key, { svc: one.url });
    await connector(key, { svc: two.url });
    // Concurrent requests: the least-loaded tunnel is chosen, ties at random.
    const answers = await Promise.all(
      Array.from({ length: 60 }, async () => json((await request(`${relay.url}/relay/shared/svc/json`))).target),
    );
    expect(answers.filter((t) => t === "one").length).toBeGreaterThan(0);
    expect(answers.filter((t) => t === "two").length).toBeGreaterThan(0);
    expect(answers.length).toBe(60);
  });

  it("lists each connector with its tunnels and targets", async () => {
    const { connectors: list } = await relay.admin.listConnectors({ tenant: "shared" });
    expect(list).toHaveLength(2);
    for (const c of list) {
      expect(c.targets).toEqual(["svc"]);
      expect(c.tunnels).toBe(1);
      expect(c.remoteAddresses).toEqual(["127.0.0.1"]);
    }
  });
});
