import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { json, request } from "../helpers/http.js";
import { startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { startConnectorProcess } from "../helpers/processes.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { eventually } from "../helpers/wait.js";

// The on-prem admin's switches on a real `ferry connector` process: --for, SIGUSR1/SIGUSR2.
// Needs `npm run build`.
let relay: TestRelay;
let target: TestTarget;

beforeAll(async () => {
  target = await startTestTarget();
  relay = await startTestRelay();
});

afterAll(async () => {
  await relay?.close();
  await target?.close();
});

const listed = async (tenant: string) => (await relay.admin.listConnectors({ tenant })).connectors;

describe("--for", () => {
  it("tells the relay when it leaves, then drains in-flight exchanges and exits 0 when the window ends", async () => {
    const key = await relay.tenantWithKey("window");
    const started = Date.now();
    const proc = startConnectorProcess(relay.url, key, { app: target.url }, { args: ["--for", "1s"] });
    await proc.waitForCount("tunnel connected", 2);
    const [connector] = await listed("window");
    expect(connector?.leaveTime).toBeDefined();
    const leaveMs = Number(connector!.leaveTime!.seconds) * 1000 + connector!.leaveTime!.nanos / 1e6;
    expect(leaveMs).toBeGreaterThan(started + 500);
    expect(leaveMs).toBeLessThan(Date.now() + 1000);
    expect((await proc.waitFor((l) => l.msg === "access window open")).remaining).toBeTruthy();

    // Outlives the window: it must still complete, as on SIGTERM.
    const slow = request(`${relay.url}/relay/window/app/slow?ms=1500`);
    const exited = await proc.exited;
    expect(exited.code).toBe(0);
    expect((await slow).status).toBe(200);
    expect(proc.lines.map((l) => l.msg)).toEqual(expect.arrayContaining(["access window ended; disconnecting", "connector stopped"]));
    await eventually(async () => (await listed("window")).length === 0, "the connector to be gone from the relay");
  });
});

describe("SIGUSR1 / SIGUSR2", () => {
  it("pauses (clients get 503 connector_paused at once, the admin API shows paused) and resumes", async () => {
    const key = await relay.tenantWithKey("signals");
    const proc = startConnectorProcess(relay.url, key, { app: target.url });
    try {
      await proc.waitForCount("tunnel connected", 2);
      expect((await request(`${relay.url}/relay/signals/app/json`)).status).toBe(200);

      proc.child.kill("SIGUSR1");
      await proc.waitFor((l) => l.msg === "connector paused: new exchanges are refused");
      await eventually(async () => (await listed("signals"))[0]?.paused === true, "the relay to list the connector as paused");
      const before = target.seen.length;
      const reply = await request(`${relay.url}/relay/signals/app/json`);
      expect(reply.status).toBe(503);
      expect(json(reply).error).toMatchObject({ code: "connector_paused" });
      expect(target.seen.length).toBe(before);

      proc.child.kill("SIGUSR2");
      await proc.waitFor((l) => l.msg === "connector resumed");
      await eventually(async () => (await listed("signals"))[0]?.paused === false, "the relay to list the connector as resumed");
      expect((await request(`${relay.url}/relay/signals/app/json`)).status).toBe(200);
    } finally {
      expect((await proc.stop()).code).toBe(0);
    }
  });
});
