import { afterAll, describe, expect, it } from "vitest";
import { createAdminClient } from "../../clients/cli/admin-client.js";
import { request } from "../helpers/http.js";
import { ADMIN_TOKEN, type FerryProcess, startConnectorProcess, startRelayProcess } from "../helpers/processes.js";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp-proxy.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";

const INTERVAL_MS = 2_000;
const cleanup: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const fn of cleanup.reverse()) await fn();
});

describe("keepalive", () => {
  it("a silently dead path is noticed by both sides within 2x the interval, then the connector reconnects", async () => {
    const target: TestTarget = await startTestTarget();
    cleanup.push(() => target.close());
    const relay = await startRelayProcess({ args: ["--keepalive", `${INTERVAL_MS}ms`] });
    cleanup.push(() => relay.stop("SIGKILL"));
    const admin = createAdminClient(relay.url, ADMIN_TOKEN);
    await admin.createTenant({ name: "acme" });
    const { secret } = await admin.createKey({ tenant: "acme" });

    // The connector reaches the relay through a proxy that can go silent without closing anything.
    const proxy: TcpProxy = await startTcpProxy(Number(new URL(relay.url).port));
    cleanup.push(() => proxy.close());
    const connector: FerryProcess = startConnectorProcess(proxy.url, secret, { app: target.url }, { args: ["--tunnels", "1"] });
    cleanup.push(() => connector.stop("SIGKILL"));
    await connector.waitForCount("tunnel connected", 1);

    const frozenAt = Date.now();
    proxy.freeze();

    const dropped = await connector.waitFor((l) => l.msg === "relay stopped answering; dropping tunnel");
    expect(Number(dropped.silentMs)).toBeLessThan(2 * INTERVAL_MS);
    expect(Number(dropped.time) - frozenAt).toBeLessThan(2 * INTERVAL_MS);

    const disconnect = await relay.waitFor((l) => (l.audit as { action?: string } | undefined)?.action === "connector.disconnect");
    expect(Date.parse(String((disconnect.audit as { time: string }).time)) - frozenAt).toBeLessThan(2 * INTERVAL_MS);

    // A new connection through the proxy works again.
    await connector.waitForCount("tunnel connected", 2);
    const res = await request(`${relay.url}/relay/acme/app/echo`, { method: "POST", body: "alive" });
    expect(res.body.toString()).toBe("alive");
    const { events } = await admin.listAuditEvents({ action: "connector.disconnect" });
    expect(events.length).toBeGreaterThan(0);
  });
});
