import { request as httpRequest } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { eventually, until } from "../helpers/wait.js";

// Finding 6 (exchanges): a tenant's exchanges are bounded by default, and one client source may hold only its
// share of them, so one client cannot make every other client of the tenant get 503. Sources are loopback
// addresses here: 127.0.0.1, 127.0.0.2 and 127.0.0.3 are three clients to the relay.
const LIMIT = 32;
const SHARE = LIMIT / 2;
let relay: TestRelay;
let target: TestTarget;
let connector: Connector;

beforeAll(async () => {
  target = await startTestTarget();
  // A share of 50%: each source may hold 16 of a limit of 32 (16 is also the smallest share, MIN_CLIENT_SHARE).
  relay = await startTestRelay({ limits: { tenantMaxExchanges: LIMIT, clientSharePercent: 50 } });
  const key = await relay.tenantWithKey("acme");
  await relay.admin.createTenant({ name: "own", settings: { maxConcurrentExchanges: LIMIT } });
  const ownKey = (await relay.admin.createKey({ tenant: "own" })).secret;
  connector = await startTestConnector(relay.url, key, { app: target.url }, { tunnels: 1 });
  const own = await startTestConnector(relay.url, ownKey, { app: target.url }, { tunnels: 1 });
  const stop = connector.stop.bind(connector);
  connector.stop = async () => {
    await own.stop();
    await stop();
  };
});

afterAll(async () => {
  await connector?.stop();
  await relay?.close();
  await target?.close();
});

interface Answer {
  status: number;
  code?: string;
  retryAfter?: string;
}

/** One request from `localAddress`; `signal` aborts a hanging one. */
function from(localAddress: string, path: string, signal?: AbortSignal): Promise<Answer> {
  const { hostname, port } = new URL(relay.url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ hostname, port, path, localAddress, agent: false, signal }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const body = Buffer.concat(chunks).toString();
        const code = res.headers["content-type"] === "application/json" ? (JSON.parse(body) as { error?: { code: string } }).error?.code : undefined;
        resolve({ status: res.statusCode!, code, retryAfter: res.headers["retry-after"] });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

/** Opens `n` requests from `address` that the target never answers, and waits until the target has them all. */
async function hold(tenant: string, address: string, n: number, ctl: AbortController): Promise<void> {
  const before = target.seen.filter((s) => s.url === "/hang").length;
  for (let i = 0; i < n; i++) void from(address, `/relay/${tenant}/app/hang`, ctl.signal).catch(() => {});
  await until(() => target.seen.filter((s) => s.url === "/hang").length >= before + n);
}

/** Waits until the tenant has no exchange in progress (the aborted ones have been let go). */
async function released(tenant: string): Promise<void> {
  await eventually(async () => (await relay.relay.metrics.render()).includes(`ferry_exchanges_in_flight{tenant="${tenant}"} 0`), "the exchanges to end");
}

const limited = (name: string) => relay.relay.faults.limits().get(name) ?? 0;

describe.each([
  ["without a limit of its own (limits.tenantMaxExchanges)", "acme", "tenantMaxExchanges"],
  ["with maxConcurrentExchanges", "own", "maxConcurrentExchanges"],
])("a tenant %s", (_what, tenant, limitName) => {
  it("lets one client source hold only its share, so another source still gets through", async () => {
    const ctl = new AbortController();
    try {
      const shareBefore = limited("clientSharePercent");
      // The first client tries to take more than its share: its share gets through, two more are refused at once.
      const hangsBefore = target.seen.filter((s) => s.url === "/hang").length;
      await hold(tenant, "127.0.0.1", SHARE, ctl);
      const attempts = Array.from({ length: 2 }, () => from("127.0.0.1", `/relay/${tenant}/app/hang`, ctl.signal).catch(() => undefined));
      const refused = await Promise.all(attempts);
      expect(refused).toEqual([
        { status: 503, code: "client_busy", retryAfter: "1" },
        { status: 503, code: "client_busy", retryAfter: "1" },
      ]);
      expect(limited("clientSharePercent")).toBe(shareBefore + 2);
      expect(target.seen.filter((s) => s.url === "/hang").length).toBe(hangsBefore + SHARE);
      // The first client holding its share does not make the second one wait.
      expect((await from("127.0.0.2", `/relay/${tenant}/app/json`)).status).toBe(200);
    } finally {
      ctl.abort();
    }
    await released(tenant);
  });

  it("answers 503 tenant_busy once the tenant's limit is held, by however many sources", async () => {
    const ctl = new AbortController();
    try {
      await hold(tenant, "127.0.0.1", SHARE, ctl);
      await hold(tenant, "127.0.0.2", SHARE, ctl);
      const before = limited(limitName);
      const fifth = await from("127.0.0.3", `/relay/${tenant}/app/json`);
      expect(fifth).toEqual({ status: 503, code: "tenant_busy", retryAfter: "1" });
      expect(limited(limitName)).toBe(before + 1);
    } finally {
      ctl.abort();
    }
    // Room again once they are gone.
    await released(tenant);
    expect((await from("127.0.0.1", `/relay/${tenant}/app/json`)).status).toBe(200);
  });
});
