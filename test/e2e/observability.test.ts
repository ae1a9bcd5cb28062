import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAdminClient } from "../../clients/cli/admin-client.js";
import { json, request } from "../helpers/http.js";
import { type FerryProcess, type RelayProcess, startConnectorProcess, startRelayProcess } from "../helpers/processes.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { eventually } from "../helpers/wait.js";

// Metrics, logs, trace context, and where secrets must never show up. Real processes, so their output can be read.
let relay: RelayProcess & { dataDir: string };
let connector: FerryProcess;
let target: TestTarget;
let adminToken: string;
let viewerToken: string;
let tenantToken: string;
let connectorKey: string;
let metricsUrl: string;

beforeAll(async () => {
  target = await startTestTarget("app");
  // No FERRY_ADMIN_TOKEN: the relay mints one and prints it once, so its secret is a real minted one.
  relay = await startRelayProcess({ env: { FERRY_ADMIN_TOKEN: "" }, args: ["--metrics-listen", "127.0.0.1:0", "--keepalive", "300ms"] });
  adminToken = /(fat_[a-z0-9]{16}_[A-Za-z0-9_-]{43})/.exec(await relay.waitForStderr(/fat_/))![1]!;
  metricsUrl = String((await relay.waitFor((l) => l.msg === "metrics listening")).url);
  const admin = createAdminClient(relay.url, adminToken);
  await admin.createTenant({ name: "obs" });
  connectorKey = (await admin.createKey({ tenant: "obs" })).secret;
  viewerToken = (await admin.createToken({ role: "viewer" })).secret;
  tenantToken = (await admin.createToken({ role: "tenant:obs" })).secret;
  connector = startConnectorProcess(relay.url, connectorKey, { app: target.url });
  await connector.waitForCount("tunnel connected", 2);
});

afterAll(async () => {
  await connector?.stop();
  await relay?.stop();
  await target?.close();
});

async function scrape(url = `${relay.url}/metrics`, token?: string): Promise<{ status: number; text: string }> {
  const res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: res.status, text: await res.text() };
}

/** The value of one series in a Prometheus text exposition (0 when absent). */
function sample(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

describe("/metrics", () => {
  it("needs an admin or viewer token on the public port", async () => {
    expect((await scrape()).status).toBe(401);
    expect((await scrape(undefined, tenantToken)).status).toBe(403);
    expect((await scrape(undefined, viewerToken)).status).toBe(200);
    expect((await scrape(undefined, adminToken)).status).toBe(200);
  });

  it("is open on the --metrics-listen address", async () => {
    const r = await scrape(metricsUrl);
    expect(r.status).toBe(200);
    expect(r.text).toContain("ferry_process_cpu_seconds_total");
  });

  it("moves with traffic", async () => {
    const before = (await scrape(undefined, viewerToken)).text;
    const series = 'ferry_requests_total{tenant="obs",target="app",status_class="2xx"}';
    for (let i = 0; i < 3; i++) await request(`${relay.url}/relay/obs/app/echo`, { method: "POST", body: "abcd" });
    await request(`${relay.url}/relay/obs/app/no-such-page`);
    await request(`${relay.url}/relay/obs/missing/x`);
    const after = (await scrape(undefined, viewerToken)).text;
    expect(sample(after, series) - sample(before, series)).toBe(3);
    expect(sample(after, 'ferry_requests_total{tenant="obs",target="app",status_class="4xx"}')).toBeGreaterThanOrEqual(1);
    expect(sample(after, 'ferry_relay_errors_total{tenant="obs",code="target_not_found"}')).toBeGreaterThanOrEqual(1);
    expect(sample(after, 'ferry_body_bytes_total{tenant="obs",target="app",direction="in"}')).toBeGreaterThanOrEqual(12);
    expect(sample(after, 'ferry_request_duration_seconds_count{tenant="obs",target="app"}')).toBeGreaterThanOrEqual(4);
    expect(sample(after, 'ferry_tunnels_connected{tenant="obs"}')).toBe(2);
    expect(sample(after, 'ferry_connectors_connected{tenant="obs"}')).toBe(1);
    // Invented names do not become series.
    expect(after).not.toContain('target="missing"');
  });

  it("reports the tunnels' keepalive round trip", async () => {
    await eventually(async () => sample((await scrape(undefined, viewerToken)).text, 'ferry_tunnel_ping_rtt_seconds{tenant="obs"}') > 0, "a ping round trip");
  });
});

describe("logs and trace context", () => {
  it("logs one line per exchange with its id, tenant, target, status, bytes and duration", async () => {
    const res = await request(`${relay.url}/relay/obs/app/echo`, { method: "POST", body: "hello", headers: { "x-request-id": "req-42" } });
    expect(res.headers["x-request-id"]).toBe("req-42");
    const line = await relay.waitFor((l) => l.msg === "exchange" && l.requestId === "req-42");
    expect(line).toMatchObject({ tenant: "obs", target: "app", method: "POST", status: 200, bytesIn: 5, bytesOut: 5 });
    expect(String(line.exchange)).toMatch(/^[0-9a-f]{32}$/);
    expect(typeof line.durationMs).toBe("number");
  });

  it("continues the client's W3C trace with the relay as the new parent", async () => {
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const res = await request(`${relay.url}/relay/obs/app/json`, { headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } });
    const seen = json<{ headers: Record<string, string> }>(res).headers;
    const [version, trace, parent, flags] = seen.traceparent!.split("-");
    expect([version, trace, flags]).toEqual(["00", traceId, "01"]);
    expect(parent).toMatch(/^[0-9a-f]{16}$/);
    expect(parent).not.toBe("00f067aa0ba902b7");
    // Without a client id, the trace id is the request id the client gets back.
    expect(res.headers["x-request-id"]).toBe(traceId);
    expect(seen["x-request-id"]).toBe(traceId);
  });

  it("starts a trace when the client has none, and sends the same id back", async () => {
    const res = await request(`${relay.url}/relay/obs/app/json`, { headers: { traceparent: "garbage" } });
    const seen = json<{ headers: Record<string, string> }>(res).headers;
    expect(seen.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    expect(res.headers["x-request-id"]).toBe(seen.traceparent!.split("-")[1]);
  });

  it("gives errors a request id too", async () => {
    const res = await request(`${relay.url}/relay/obs/missing/x`);
    expect(res.status).toBe(404);
    expect(res.headers["x-request-id"]).toMatch(/^[0-9a-f]{32}$/);
  });
});

describe("secrets", () => {
  it("never appear in logs, audit, metrics or the data directory in clear", async () => {
    const secretParts = [adminToken, viewerToken, tenantToken, connectorKey].map((s) => s.slice(21)); // after "fxx_<id>_"
    const auditJson = JSON.stringify(await fetch(`${relay.url}/ferry.admin.v1.AdminService/ListAuditEvents`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${adminToken}` },
      body: JSON.stringify({ pageSize: 1000 }),
    }).then((r) => r.json()));
    const metrics = (await scrape(undefined, adminToken)).text;
    const relayLogs = JSON.stringify(relay.lines);
    // stderr shows the minted admin token once, by design; nothing else.
    const relayStderr = relay.stderr.join("\n").replace(adminToken, "");
    const connectorLogs = JSON.stringify(connector.lines) + connector.stderr.join("\n");
    const dataFiles = files(relay.dataDir).map((f) => readFileSync(f, "latin1")).join("\n");
    for (const secret of secretParts) {
      for (const [where, text] of Object.entries({ auditJson, metrics, relayLogs, relayStderr, connectorLogs, dataFiles })) {
        expect(text.includes(secret), `secret in ${where}`).toBe(false);
      }
    }
    expect(dataFiles.length).toBeGreaterThan(0);
    expect(auditJson).toContain("key.create");
  });

  it("the data directory is private to the relay's user", () => {
    for (const f of files(relay.dataDir)) expect(statSync(f).mode & 0o077, f).toBe(0);
  });
});

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? files(join(dir, d.name)) : d.name === "LOCK" ? [] : [join(dir, d.name)]));
}
