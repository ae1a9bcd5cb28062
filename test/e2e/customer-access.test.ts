import { existsSync, readFileSync, renameSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import type { AuditRecord } from "../../clients/connector/exchange-audit.js";
import { json, request } from "../helpers/http.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { tempDir } from "../helpers/processes.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { eventually, until } from "../helpers/wait.js";

// What the on-prem admin controls at the connector, whatever the relay allows: per-target allowlists,
// the local audit log, and pause/resume through the loopback control endpoint.
const APP = "https://app.example.com";
let relay: TestRelay;
let target: TestTarget;
let connector: Connector;
let controlUrl: string;
const auditFile = join(tempDir(), "exchanges.jsonl");

beforeAll(async () => {
  target = await startTestTarget();
  relay = await startTestRelay();
  const key = await relay.tenantWithKey("acme");
  connector = await startTestConnector(
    relay.url,
    key,
    {
      crm: {
        url: target.url,
        allowedPaths: ["/json", "/echo", "/hang"],
        allowedMethods: ["GET", "POST"],
        cors: { allowedOrigins: [APP], allowedMethods: ["GET", "POST"] },
      },
      open: target.url,
    },
    { flags: { auditLog: auditFile, controlListen: "127.0.0.1:0" } },
  );
  controlUrl = (await connector.controlUrl)!;
});

afterAll(async () => {
  await connector?.stop();
  await relay?.close();
  await target?.close();
});

const url = (targetName: string, path: string) => `${relay.url}/relay/acme/${targetName}${path}`;
const auditLines = (): AuditRecord[] =>
  readFileSync(auditFile, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditRecord);

describe("per-target allowlists", () => {
  it("lets an allowed method on an allowed path through", async () => {
    const reply = await request(url("crm", "/json?q=1"));
    expect(reply.status).toBe(200);
    expect(target.seen.at(-1)?.url).toBe("/json?q=1");
  });

  it("answers 403 connector_forbidden for a path outside the list, without reaching the target", async () => {
    const before = target.seen.length;
    for (const path of ["/admin", "/jsonx", "/echoes/x"]) {
      const reply = await request(url("crm", path));
      expect(reply.status, path).toBe(403);
      expect(json(reply).error).toMatchObject({ code: "connector_forbidden" });
    }
    expect(target.seen.length).toBe(before);
    // The relay allows these: the same paths on a target without an allowlist reach it.
    expect((await request(url("open", "/jsonx"))).status).toBe(404);
    expect(target.seen.at(-1)?.url).toBe("/jsonx");
  });

  it("answers 403 for a method outside the list on an allowed path", async () => {
    const before = target.seen.length;
    const reply = await request(url("crm", "/echo"), { method: "DELETE" });
    expect(reply.status).toBe(403);
    expect(json(reply).error).toMatchObject({ code: "connector_forbidden" });
    expect(target.seen.length).toBe(before);
    expect((await request(url("open", "/echo"), { method: "DELETE" })).status).toBe(200);
  });

  it("refuses a CORS preflight to a closed path and answers one to an open path", async () => {
    const preflight = (path: string) =>
      request(url("crm", path), { method: "OPTIONS", headers: { origin: APP, "access-control-request-method": "POST" } });
    expect((await preflight("/admin")).status).toBe(403);
    expect((await preflight("/echo")).status).toBe(204);
    expect(target.seen.filter((r) => r.method === "OPTIONS")).toHaveLength(0);
  });
});

describe("audit log", () => {
  it("records each exchange: ok, forbidden and reset, with bytes, status and client", async () => {
    expect((await request(url("crm", "/echo?audit=1"), { method: "POST", body: "hello" })).status).toBe(200);
    expect((await request(url("crm", "/secret?audit=2"))).status).toBe(403);
    const abort = new AbortController();
    const hanging = request(url("crm", "/hang?audit=3"), { signal: abort.signal }).catch(() => "aborted");
    await until(() => target.seen.some((r) => r.url === "/hang?audit=3"));
    abort.abort();
    expect(await hanging).toBe("aborted");

    await eventually(() => auditLines().filter((l) => /audit=/.test(l.path)).length === 3, "three audit lines");
    const [ok, forbidden, reset] = ["1", "2", "3"].map((n) => auditLines().find((l) => l.path.endsWith(`audit=${n}`))!);
    expect(ok).toMatchObject({ target: "crm", method: "POST", path: "/echo?audit=1", status: 200, bytesIn: 5, bytesOut: 5, outcome: "ok" });
    expect(ok!.client).toMatch(/127\.0\.0\.1/);
    expect(new Date(ok!.time).getTime()).toBeGreaterThan(Date.now() - 60_000);
    expect(ok!.id).toMatch(/^[0-9a-f]+$/);
    expect(forbidden).toMatchObject({ method: "GET", path: "/secret?audit=2", status: 403, outcome: "forbidden" });
    expect(reset).toMatchObject({ path: "/hang?audit=3", status: 0, outcome: "reset: CANCELLED" });
    expect(statSync(auditFile).mode & 0o777).toBe(0o600);
  });


  it("reopens the file after logrotate moved it away (SIGHUP)", async () => {
    await eventually(() => existsSync(auditFile) && auditLines().length > 0, "audit lines");
    const rotated = `${auditFile}.1`;
    renameSync(auditFile, rotated);
    const before = readFileSync(rotated, "utf8");
    connector.reopenAuditLog();
    expect((await request(url("crm", "/json?audit=rotated"))).status).toBe(200);
    await eventually(() => existsSync(auditFile) && auditLines().some((l) => l.path === "/json?audit=rotated"), "a line in the new file");
    expect(readFileSync(rotated, "utf8")).toBe(before);
    expect(statSync(auditFile).mode & 0o777).toBe(0o600);
  });
});

describe("pause and resume through the control endpoint", () => {
  const control = (method: string, path: string, headers: Record<string, string> = {}) => request(`${controlUrl}${path}`, { method, headers });
  const listed = async () => (await relay.admin.listConnectors({ tenant: "acme" })).connectors[0]!;

  it("shows the status", async () => {
    const status = json(await control("GET", "/status"));
    expect(status).toMatchObject({ paused: false, leaveTime: null, tunnels: 2, inFlight: 0 });
    expect(status.targets).toContainEqual({ name: "crm", allowedPaths: ["/json", "/echo", "/hang"], allowedMethods: ["GET", "POST"] });
  });

  it("pauses: the relay answers 503 connector_paused at once and the admin API shows it; resume brings 200 back", async () => {
    expect(json(await control("POST", "/pause"))).toMatchObject({ paused: true });
    await eventually(async () => (await listed()).paused, "the relay to list the connector as paused");
    const before = target.seen.length;
    const reply = await request(url("open", "/json"));
    expect(reply.status).toBe(503);
    expect(json(reply).error).toMatchObject({ code: "connector_paused" });
    expect(target.seen.length).toBe(before);

    expect(json(await control("POST", "/resume"))).toMatchObject({ paused: false });
    await eventually(async () => !(await listed()).paused, "the relay to list the connector as resumed");
    expect((await request(url("open", "/json"))).status).toBe(200);
  });

  it("refuses browser requests and unknown routes", async () => {
    expect((await control("POST", "/pause", { origin: "https://evil.example" })).status).toBe(403);
    expect(connector.status().paused).toBe(false);
    expect((await control("GET", "/pause")).status).toBe(405);
    expect((await control("GET", "/nope")).status).toBe(404);
  });
});
