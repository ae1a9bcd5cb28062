import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAdminClient } from "../../clients/cli/admin-client.js";
import type { Connector } from "../../clients/connector/connector.js";
import { request } from "../helpers/http.js";
import { startTestConnector } from "../helpers/in-process.js";
import { ADMIN_TOKEN, type RelayProcess, runFerry, spawnFerry, startRelayProcess } from "../helpers/processes.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";

// `ferry admin traffic ...` against a real relay process: the live stream, captures and replays from a terminal.
let relay: RelayProcess;
let target: TestTarget;
let connector: Connector;
let env: Record<string, string>;

beforeAll(async () => {
  target = await startTestTarget();
  relay = await startRelayProcess();
  env = { FERRY_RELAY: relay.url, FERRY_TOKEN: ADMIN_TOKEN };
  const admin = createAdminClient(relay.url, ADMIN_TOKEN);
  await admin.createTenant({ name: "acme" });
  const { secret } = await admin.createKey({ tenant: "acme" });
  connector = await startTestConnector(relay.url, secret, { app: target.url });
});

afterAll(async () => {
  await connector?.stop();
  await relay?.stop();
  await target?.close();
});

const ferry = (...args: string[]) => runFerry(["admin", ...args], env);

describe("ferry admin traffic", () => {
  it("watch prints a JSON line per exchange that matches, and Ctrl-C ends it cleanly", async () => {
    const watch = spawnFerry(["admin", "traffic", "watch", "--tenant", "acme", "--status", "4xx", "--json"], env);
    await watch.waitForStderr(/^watching exchanges/);
    await request(`${relay.url}/relay/acme/app/json`, { headers: { "x-request-id": "cli-ok" } });
    await request(`${relay.url}/relay/acme/app/missing`, { headers: { "x-request-id": "cli-404" } });
    const line = await watch.waitFor((l) => l.requestId === "cli-404", "the 404's line");
    expect(line).toMatchObject({ tenant: "acme", target: "app", method: "GET", path: "/missing", status: 404 });
    expect(watch.lines.some((l) => l.requestId === "cli-ok")).toBe(false);
    expect(await watch.stop("SIGINT")).toEqual({ code: 0, signal: null });
    expect(watch.stderr.join("\n")).not.toMatch(/Error|at /);
  });

  it("watch prints one human line per exchange", async () => {
    const watch = spawnFerry(["admin", "traffic", "watch", "--target", "app"], env);
    await watch.waitForStderr(/^watching exchanges/);
    await request(`${relay.url}/relay/acme/app/json`);
    const line = await watch.waitFor((l) => l.raw === true && String(l.msg).includes("acme/app"), "a line");
    expect(String(line.msg)).toMatch(/acme\/app {2}GET {2}\/json {2}200 /);
    expect(await watch.stop("SIGINT")).toEqual({ code: 0, signal: null });
  });

  it("captures, shows with credentials redacted, and replays (a POST only with --confirm)", async () => {
    const started = await ferry("traffic", "capture", "start", "acme", "app", "--for", "5m", "--json");
    expect(started.code).toBe(0);
    const captureId = JSON.parse(started.stdout).captureId as string;
    await request(`${relay.url}/relay/acme/app/echo`, { method: "POST", headers: { authorization: "Bearer cli-secret" }, body: "again" });
    const listed = await ferry("traffic", "capture", "list");
    expect(listed.stdout).toMatch(new RegExp(`${captureId}\\s+acme\\s+app\\s+recording`));
    const shown = await ferry("traffic", "capture", "show", captureId);
    expect(shown.stdout).toContain("> authorization: [redacted]");
    expect(shown.stdout).toContain("> again");
    expect(shown.stdout).not.toContain("cli-secret");
    const exchangeId = JSON.parse((await ferry("traffic", "capture", "show", captureId, "--json")).stdout).exchanges[0].summary.exchangeId as string;

    const refused = await ferry("traffic", "replay", captureId, exchangeId);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/failed_precondition: replaying a POST may repeat what it did/);
    const replayed = await ferry("traffic", "replay", captureId, exchangeId, "--confirm");
    expect(replayed.code).toBe(0);
    expect(replayed.stdout.split("\n")[0]).toBe("200");
    expect(replayed.stdout).toContain("again");
    expect((await ferry("traffic", "capture", "stop", captureId)).stdout).toMatch(/^stopped capture .*: 2 exchanges kept/);
  });

  it("history, whoami, and clear refusals of bad input", async () => {
    const history = await ferry("traffic", "history", "--json");
    expect(JSON.parse(history.stdout).buckets).toHaveLength(90);
    expect((await ferry("whoami")).stdout.trim()).toMatch(/^token bootstrap \(admin\), node /);
    const badStatus = await ferry("traffic", "watch", "--status", "teapot");
    expect(badStatus.code).toBe(2);
    expect(badStatus.stderr).toMatch(/invalid_argument: status "teapot"/);
    const tooLong = await ferry("traffic", "capture", "start", "acme", "app", "--for", "3h");
    expect(tooLong.code).toBe(2);
    expect(tooLong.stderr).toMatch(/at most 1 hour/);
    expect((await ferry("traffic", "capture", "start", "acme", "app", "--for", "soon")).code).toBe(1);
  });
});
