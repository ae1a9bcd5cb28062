import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { json, request } from "../helpers/http.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { type NatsServer, startNatsServer } from "../helpers/nats-server.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { eventually } from "../helpers/wait.js";

// A connector's pause and --for window as the other nodes of a cluster see them (presence over NATS).
let nats: NatsServer;
let a: TestRelay;
let b: TestRelay;
let target: TestTarget;
let conn: Connector;

beforeAll(async () => {
  nats = await startNatsServer();
  const node = (nodeId: string) => startTestRelay({ nats: { servers: [nats.url] }, nodeId });
  [a, b] = await Promise.all([node("a"), node("b")]);
  target = await startTestTarget();
  await a.admin.createTenant({ name: "acme" });
  const { secret } = await a.admin.createKey({ tenant: "acme" });
  await eventually(() => b.relay.catalog.getKey(secret.split("_")[1]!) !== undefined, "key replicated");
  conn = await startTestConnector(b.url, secret, { app: target.url }, { flags: { for: "1h" } });
  await eventually(async () => (await a.admin.listConnectors({ tenant: "acme" })).connectors.length === 1, "connector visible on A");
});

afterAll(async () => {
  await conn?.stop();
  await Promise.all([a, b].map((r) => r?.close()));
  await target?.close();
  await nats?.close();
});

const listedOnA = async () => (await a.admin.listConnectors({ tenant: "acme" })).connectors[0]!;

describe("customer-controlled access in a cluster", () => {
  it("shows the leave time on every node", async () => {
    const leave = (await listedOnA()).leaveTime!;
    const leaveMs = Number(leave.seconds) * 1000 + leave.nanos / 1e6;
    expect(Math.abs(leaveMs - (Date.now() + 3_600_000))).toBeLessThan(60_000);
  });

  it("a pause reaches the other node: it answers 503 connector_paused at once and lists the connector paused", async () => {
    expect((await request(`${a.url}/relay/acme/app/json`)).status).toBe(200);
    conn.pause("test");
    await eventually(async () => (await listedOnA()).paused, "node A to list the connector as paused");
    const before = target.seen.length;
    for (const via of [a, b]) {
      const started = Date.now();
      const reply = await request(`${via.url}/relay/acme/app/json`);
      expect(reply.status).toBe(503);
      expect(json(reply).error).toMatchObject({ code: "connector_paused" });
      // Not the wait for a connector on its way from another node (a few seconds).
      expect(Date.now() - started).toBeLessThan(2_000);
    }
    expect(target.seen.length).toBe(before);

    conn.resume("test");
    await eventually(async () => !(await listedOnA()).paused, "node A to list the connector as resumed");
    await eventually(async () => (await request(`${a.url}/relay/acme/app/json`)).status === 200, "node A to route to it again");
  });
});
