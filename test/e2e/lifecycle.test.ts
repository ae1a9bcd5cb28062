import { Agent, request as httpRequest } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { createAdminClient } from "../../clients/cli/admin-client.js";
import { json, request } from "../helpers/http.js";
import { ADMIN_TOKEN, type FerryProcess, startConnectorProcess, startRelayProcess } from "../helpers/processes.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { until } from "../helpers/wait.js";
import { closed, nextMessage, openWebSocket, startWebSocketTarget } from "../helpers/websocket-targets.js";

// Start, stop, restart and drain real relay and connector processes.
const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function target(): Promise<TestTarget> {
  const t = await startTestTarget();
  cleanup.push(() => t.close());
  return t;
}

function track<P extends FerryProcess>(p: P): P {
  cleanup.push(() => p.stop("SIGKILL"));
  return p;
}

/** A relay with tenant acme and a key for it. */
async function relayWithKey(opts: { dataDir?: string; port?: number; args?: string[] } = {}) {
  const relay = track(await startRelayProcess(opts));
  const admin = createAdminClient(relay.url, ADMIN_TOKEN);
  await admin.createTenant({ name: "acme" });
  const { secret } = await admin.createKey({ tenant: "acme" });
  return { relay, secret, port: Number(new URL(relay.url).port) };
}

describe("lifecycle", () => {
  it("a connector started before the relay connects once it is up, and state survives relay restarts", async () => {
    const t = await target();
    const first = await relayWithKey();
    expect(await first.relay.stop()).toEqual({ code: 0, signal: null });

    // Relay down: the connector keeps retrying with backoff.
    const connector = track(startConnectorProcess(`http://127.0.0.1:${first.port}`, first.secret, { app: t.url }));
    await connector.waitForCount("tunnel failed", 2);

    // Relay back on the same port and data directory: the key minted before still works.
    const again = track(await startRelayProcess({ dataDir: first.relay.dataDir, port: first.port }));
    await connector.waitForCount("tunnel connected", 2);
    const res = await request(`${again.url}/relay/acme/app/echo`, { method: "POST", body: "after restart" });
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("after restart");
  });

  it("after a relay restart the connector reconnects and traffic resumes", async () => {
    const t = await target();
    const { relay, secret, port } = await relayWithKey();
    const connector = track(startConnectorProcess(relay.url, secret, { app: t.url }));
    await connector.waitForCount("tunnel connected", 2);
    expect((await request(`${relay.url}/relay/acme/app/echo`, { method: "POST", body: "one" })).body.toString()).toBe("one");

    expect(await relay.stop()).toEqual({ code: 0, signal: null });
    await connector.waitForCount("relay sent GoAway; moving", 2);
    const restarted = track(await startRelayProcess({ dataDir: relay.dataDir, port }));
    await connector.waitForCount("tunnel connected", 4);
    expect((await request(`${restarted.url}/relay/acme/app/echo`, { method: "POST", body: "two" })).body.toString()).toBe("two");
  });

  it("SIGTERM on the relay finishes in-flight exchanges, refuses new ones, then exits 0", async () => {
    const t = await target();
    const { relay, secret } = await relayWithKey();
    const connector = track(startConnectorProcess(relay.url, secret, { app: t.url }));
    await connector.waitForCount("tunnel connected", 2);

    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    cleanup.push(async () => agent.destroy());
    // Open a keep-alive connection first, so a request can still arrive after the listener closes.
    expect((await get(`${relay.url}/healthz`, agent)).status).toBe(200);
    expect(await get(`${relay.url}/readyz`, agent)).toEqual({ status: 200, body: '{"status":"ready"}' });
    const inFlight = request(`${relay.url}/relay/acme/app/slow?ms=1500`);
    await until(() => t.seen.some((s) => s.url === "/slow?ms=1500"));

    relay.child.kill("SIGTERM");
    await relay.waitFor((l) => String(l.msg).startsWith("draining"));
    await connector.waitForCount("relay sent GoAway; moving", 2);
    // Load balancers see the node leave, and new exchanges are refused.
    expect(await get(`${relay.url}/readyz`, agent)).toEqual({ status: 503, body: '{"status":"not ready"}' });
    const refused = await get(`${relay.url}/relay/acme/app/echo`, agent);
    expect(refused.status).toBe(503);
    expect(JSON.parse(refused.body).error.code).toBe("draining");

    const done = await inFlight;
    expect(done.status).toBe(200);
    expect(done.body.toString()).toBe("slow done");
    expect(await relay.exited).toEqual({ code: 0, signal: null });
  });

  it("SIGTERM on the relay keeps open WebSockets working through the grace period, then closes them and exits 0", async () => {
    const chat = await startWebSocketTarget();
    cleanup.push(() => chat.close());
    const { relay, secret } = await relayWithKey({ args: ["--grace", "1s"] });
    const connector = track(startConnectorProcess(relay.url, secret, { chat: chat.url }));
    await connector.waitForCount("tunnel connected", 2);
    const ws = await openWebSocket(`${relay.url.replace(/^http/, "ws")}/relay/acme/chat/live`);
    const wsClosed = closed(ws);

    relay.child.kill("SIGTERM");
    await relay.waitFor((l) => String(l.msg).startsWith("draining"));
    ws.send("still served while draining");
    expect((await nextMessage(ws)).data.toString()).toBe("still served while draining");
    // A WebSocket never finishes by itself: the grace period ends it, and the relay exits.
    expect((await wsClosed).code).toBe(1006);
    expect(await relay.exited).toEqual({ code: 0, signal: null });
    await until(() => chat.open === 0);
  });

  it("SIGTERM on the connector finishes in-flight exchanges, then exits 0", async () => {
    const t = await target();
    const { relay, secret } = await relayWithKey();
    const connector = startConnectorProcess(relay.url, secret, { app: t.url });
    await connector.waitForCount("tunnel connected", 2);
    const inFlight = request(`${relay.url}/relay/acme/app/slow?ms=1500`);
    await until(() => t.seen.some((s) => s.url === "/slow?ms=1500"));

    connector.child.kill("SIGTERM");
    await connector.waitFor((l) => l.msg === "connector draining");
    const done = await inFlight;
    expect(done.status).toBe(200);
    expect(done.body.toString()).toBe("slow done");
    expect(await connector.exited).toEqual({ code: 0, signal: null });
    const after = await request(`${relay.url}/relay/acme/app/echo`);
    expect(after.status).toBe(503);
    expect(json<{ error: { code: string } }>(after).error.code).toBe("no_connector");
  });

  it("a connector killed mid-exchange fails that exchange with 502 at once", async () => {
    const t = await target();
    const { relay, secret } = await relayWithKey();
    const connector = startConnectorProcess(relay.url, secret, { app: t.url });
    await connector.waitForCount("tunnel connected", 2);
    const inFlight = request(`${relay.url}/relay/acme/app/hang`);
    await until(() => t.seen.some((s) => s.url === "/hang"));
    connector.child.kill("SIGKILL");
    const res = await inFlight;
    expect(res.status).toBe(502);
    expect(json<{ error: { code: string } }>(res).error.code).toBe("connector_lost");
  });
});

function get(url: string, agent: Agent): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    httpRequest(url, { agent }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode!, body }));
    })
      .on("error", reject)
      .end();
  });
}
