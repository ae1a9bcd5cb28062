import { fromJson } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { AccessPolicySchema } from "../../gen/ferry/access/v1/access_policy_pb.js";
import { request } from "../helpers/http.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { type NatsServer, startNatsServer } from "../helpers/nats-server.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { eventually } from "../helpers/wait.js";

// A rule's rate limit in a cluster on a real nats-server: each node enforces 1/(relay nodes taking clients) of it,
// so with the load spread over the nodes the tenant's limit holds as a whole (within 20%), not once per node.
// The tests run in order: node A alone, then B joins, then B drains. Each phase has its own rule (and target),
// so its bucket starts full.

const LIMIT = 40;
/** An hour: the refill while a phase runs (1/90 of a token a second) never adds a whole token. */
const PER = "3600s";
const REQUESTS = 200;
const TARGETS = ["alone", "spread", "lopsided", "after", "probe"] as const;

let nats: NatsServer;
let a: TestRelay;
let b: TestRelay | undefined;
let target: TestTarget;
let connector: Connector;

// 127.0.0.1 is a trusted proxy: the probe's X-Forwarded-For gives each probe a bucket of its own.
const node = (nodeId: string) => startTestRelay({ nats: { servers: [nats.url] }, nodeId, trustedProxies: ["127.0.0.1"] });
const limited = (name: string) => ({ name, targets: [name], rateLimit: { requests: LIMIT, per: PER, burst: LIMIT, by: "rule" } });

beforeAll(async () => {
  nats = await startNatsServer();
  [a, target] = await Promise.all([node("a"), startTestTarget("app")]);
  const key = await a.tenantWithKey("acme");
  const probe = { name: "probe", targets: ["probe"], rateLimit: { requests: 2, per: PER, burst: 2, by: "ip" } };
  const rules = [...TARGETS.filter((t) => t !== "probe").map(limited), probe];
  await a.admin.setAccessPolicy({ tenant: "acme", policy: fromJson(AccessPolicySchema, { rules } as never) });
  connector = await startTestConnector(a.url, key, Object.fromEntries(TARGETS.map((t) => [t, target.url])), { tunnels: 1 });
});

afterAll(async () => {
  await connector?.stop();
  await Promise.all([a?.close(), b?.close()]);
  await target?.close();
  await nats?.close();
});

const get = (via: TestRelay, name: string, headers: Record<string, string> = {}) => request(`${via.url}/relay/acme/${name}/json`, { headers });

/** `REQUESTS` requests to `name`'s rule, taking turns over `via`, each sent once the one before is answered: the 200s. */
async function passed(name: string, via: TestRelay[]): Promise<number> {
  let ok = 0;
  for (let i = 0; i < REQUESTS; i++) {
    const r = await get(via[i % via.length]!, name);
    if (r.status === 200) ok++;
    else expect(r.status, r.body.toString()).toBe(429); // refused by the limit, never failed otherwise
  }
  return ok;
}

let probes = 0;
/**
 * How many nodes `via` divides its limits by, seen from outside: the probe rule allows 2 per address, and a new
 * address's bucket starts full at max(1, 2 / nodes), so 2 requests pass alone and 1 with a peer.
 */
async function splits(via: TestRelay): Promise<boolean> {
  probes++;
  const from = { "x-forwarded-for": `198.51.${100 + (probes >> 8)}.${probes & 255}` };
  const first = await get(via, "probe", from);
  const second = await get(via, "probe", from);
  return first.status === 200 && second.status === 429;
}

describe("rate limits in a cluster", () => {
  it("a node alone allows the limit exactly", async () => {
    expect(await splits(a)).toBe(false);
    expect(await passed("alone", [a])).toBe(LIMIT);
  });

  it("holds the limit within 20% for the tenant as a whole when the load is spread over two nodes", async () => {
    b = await node("b");
    const joined = b;
    await eventually(async () => (await joined.admin.listConnectors({ tenant: "acme" })).connectors.length === 1, "B to see the connector on A");
    // Both nodes must have heard each other's heartbeats (B routes its requests to the connector on A, too).
    await eventually(async () => (await splits(a)) && (await splits(joined)), "both nodes to count each other");
    const ok = await passed("spread", [a, joined]);
    expect(ok).toBeGreaterThanOrEqual(LIMIT * 0.8);
    expect(ok).toBeLessThanOrEqual(LIMIT * 1.2);
  });

  it("allows only the node's share when the load is not spread (the trade-off of shares)", async () => {
    expect(await passed("lopsided", [a])).toBe(LIMIT / 2);
  });

  it("gives a node the whole limit again once its peer drains", async () => {
    // Draining, B still beats (and finishes its exchanges), but its clients are moving to A: A stops counting it.
    await b!.relay.drain(0);
    await eventually(async () => !(await splits(a)), "A to count itself alone");
    expect(await passed("after", [a])).toBe(LIMIT);
  });
});
