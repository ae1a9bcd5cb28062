import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WebSocket } from "ws";
import { createAdminClient } from "../../clients/cli/admin-client.js";
import { ADMIN_TOKEN, type FerryProcess, type RelayProcess, startConnectorProcess, startRelayProcess } from "../helpers/processes.js";
import { until } from "../helpers/wait.js";
import { closed, nextMessage, openWebSocket, startWebSocketTarget, type WebSocketTarget } from "../helpers/websocket-targets.js";

// 1,000 WebSockets open at once through one relay process, memory read from /proc.
const COUNT = 1000;
/** What 1,000 open WebSockets may add to the relay's resident memory: 100 KB each, at most. */
const RELAY_GROWTH_LIMIT = 100e6;

let relay: RelayProcess;
let connector: FerryProcess;
let target: WebSocketTarget;

beforeAll(async () => {
  target = await startWebSocketTarget();
  // All 1,000 sockets come from 127.0.0.1 to one tenant: above the default per-address connection cap and a
  // client's share of a tenant's exchanges, which are not what this test is about.
  relay = await startRelayProcess({ args: ["--limit", "maxConnectionsPerIp=2000", "--limit", "clientSharePercent=100", "--limit", "tenantMaxExchanges=2000"] });
  const admin = createAdminClient(relay.url, ADMIN_TOKEN);
  await admin.createTenant({ name: "acme" });
  const { secret } = await admin.createKey({ tenant: "acme" });
  connector = startConnectorProcess(relay.url, secret, { chat: target.url });
  await connector.waitForCount("tunnel connected", 2);
});

afterAll(async () => {
  await connector?.stop();
  await relay?.stop();
  await target?.close();
});

describe("many WebSockets", () => {
  it(`holds ${COUNT} concurrent WebSockets through one relay with bounded memory`, async () => {
    const url = `${relay.url.replace(/^http/, "ws")}/relay/acme/chat/ws`;
    // Warm up (code paths, pools), then take the baseline.
    const warm = await openWebSocket(url);
    warm.send("warm");
    await nextMessage(warm);
    warm.close();
    await closed(warm);
    const baseline = relay.rss();

    const sockets: WebSocket[] = [];
    for (let i = 0; i < COUNT; i += 100) {
      sockets.push(...(await Promise.all(Array.from({ length: 100 }, () => openWebSocket(url)))));
    }
    expect(target.open).toBe(COUNT);
    // Every one of them works, all at once.
    const replies = await Promise.all(
      sockets.map((ws, i) => {
        const reply = nextMessage(ws);
        ws.send(`message ${i}`);
        return reply;
      }),
    );
    expect(replies.map((r) => r.data.toString())).toEqual(sockets.map((_, i) => `message ${i}`));
    const growth = relay.rss() - baseline;
    expect(growth).toBeLessThan(RELAY_GROWTH_LIMIT);

    await Promise.all(
      sockets.map((ws) => {
        ws.close(1000);
        return closed(ws);
      }),
    );
    await until(() => target.open === 0);
  });
});
