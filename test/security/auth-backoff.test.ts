import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdminService } from "../../gen/ferry/admin/v1/admin_service_pb.js";
import { startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { ADMIN_TOKEN } from "../helpers/processes.js";
import { eventually } from "../helpers/wait.js";
import { tunnelAttempt } from "./raw-tunnel.js";

// Finding 13: 2,000 wrong admin tokens in 4 s and 2,000 wrong tunnel keys in 1 s met no delay, and the global
// refusal limiter kept 120 audit records without their sources. Now each source address backs off on its own.
const RESOURCE_EXHAUSTED = 8;
const UNAUTHENTICATED = 16;
const WRONG_KEY = `fck_0123456789abcdef_${"A".repeat(43)}`;

let relay: TestRelay;
let quick: TestRelay;
let key: string;

beforeAll(async () => {
  [relay, quick] = await Promise.all([
    startTestRelay({ limits: { authFailuresBeforeBackoff: 3, authBackoffMaxMs: 60_000 } }),
    startTestRelay({ limits: { authFailuresBeforeBackoff: 2, authBackoffMaxMs: 200 } }),
  ]);
  key = await relay.tenantWithKey("acme");
});

afterAll(async () => {
  await Promise.all([relay?.close(), quick?.close()]);
});

const attempt = (url: string, secret: string, localAddress: string) => tunnelAttempt(url, secret, { localAddress });

async function refusals(r: TestRelay) {
  return (await r.admin.listAuditEvents({ pageSize: 1000 })).events.filter((e) => e.action === "connector.refused");
}

describe("back-off on failed connector keys, per source address", () => {
  it("refuses a source at once after its failures, while other sources and right keys elsewhere go on", async () => {
    for (let i = 0; i < 3; i++) expect((await attempt(relay.url, WRONG_KEY, "127.0.0.1")).status).toBe(UNAUTHENTICATED);
    const waiting = await attempt(relay.url, WRONG_KEY, "127.0.0.1");
    expect(waiting).toMatchObject({ status: RESOURCE_EXHAUSTED, message: "too many failed attempts from this address: retry in 1s" });
    // During the wait even a right key from that source is not looked at.
    expect((await attempt(relay.url, key, "127.0.0.1")).status).toBe(RESOURCE_EXHAUSTED);
    // Another source is unaffected: its wrong key is checked (and refused as wrong), a right one gets in.
    expect((await attempt(relay.url, WRONG_KEY, "127.0.0.2")).status).toBe(UNAUTHENTICATED);
    expect((await attempt(relay.url, key, "127.0.0.3")).status).toBe("welcome");
    await eventually(() => relay.relay.registry.tunnels("acme").length === 0, "the welcomed tunnel to go");
  });

  it("keeps a flood from one source out of the audit trail, and names each source in what it records", async () => {
    const before = relay.relay.faults.limits().get("authFailuresBeforeBackoff") ?? 0;
    for (let i = 0; i < 3; i++) await attempt(relay.url, WRONG_KEY, "127.0.0.4");
    const outcomes = await Promise.all(Array.from({ length: 200 }, () => attempt(relay.url, WRONG_KEY, "127.0.0.4")));
    // Each wait that runs out lets one attempt be checked, and doubles the next wait (1 s, 2 s, 4 s...): on a
    // slow machine a few may be checked, never more.
    const checked = outcomes.filter((o) => o.status === UNAUTHENTICATED).length;
    expect(checked).toBeLessThanOrEqual(3);
    expect(outcomes.filter((o) => o.status === RESOURCE_EXHAUSTED)).toHaveLength(200 - checked);
    expect(relay.relay.faults.limits().get("authFailuresBeforeBackoff")).toBe(before + 200 - checked);
    const records = await refusals(relay);
    const from = (address: string) => records.filter((e) => e.details?.remoteAddress === address);
    expect(records.every((e) => typeof e.details?.remoteAddress === "string")).toBe(true);
    expect(from("127.0.0.4").length).toBeLessThanOrEqual(10); // the per-source quota of a window
    expect(from("127.0.0.4").some((e) => e.details?.reason === "too many failed attempts")).toBe(true);
    expect(from("127.0.0.2")).toHaveLength(1); // not crowded out by the flood
    expect(from("127.0.0.1").length).toBeGreaterThan(0);
  });

  it("lets a source in again once its wait is over, and a success starts it over", async () => {
    const k = await quick.tenantWithKey("acme");
    for (let i = 0; i < 2; i++) expect((await attempt(quick.url, WRONG_KEY, "127.0.0.1")).status).toBe(UNAUTHENTICATED);
    expect((await attempt(quick.url, k, "127.0.0.1")).status).toBe(RESOURCE_EXHAUSTED);
    let last: number | "welcome" = RESOURCE_EXHAUSTED;
    await eventually(async () => (last = (await attempt(quick.url, k, "127.0.0.1")).status) !== RESOURCE_EXHAUSTED, "the wait to end");
    expect(last).toBe("welcome");
    // Started over: the next wrong key is checked again rather than refused by the back-off.
    expect((await attempt(quick.url, WRONG_KEY, "127.0.0.1")).status).toBe(UNAUTHENTICATED);
  });
});

function admin(url: string, token: string, localAddress: string, forwardedFor?: string) {
  const auth: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    if (forwardedFor) req.header.set("x-forwarded-for", forwardedFor);
    return next(req);
  };
  return createClient(AdminService, createConnectTransport({ baseUrl: url, httpVersion: "1.1", interceptors: [auth], nodeOptions: { localAddress } }));
}

describe("back-off on failed admin tokens, per source address", () => {
  it("answers ResourceExhausted with a retry hint after the failures, without looking at the token; other sources go on", async () => {
    const edge = await startTestRelay({ limits: { authFailuresBeforeBackoff: 3, authBackoffMaxMs: 60_000 } });
    try {
      const call = async (token: string, from: string) => {
        let headers: Headers | undefined;
        const err = await admin(edge.url, token, from)
          .listTenants({}, { onHeader: (h) => (headers = h) })
          .then(() => undefined, (e: unknown) => ConnectError.from(e));
        return { code: err?.code, message: err?.rawMessage, retryAfter: err?.metadata.get("retry-after") ?? headers?.get("retry-after") };
      };
      for (let i = 0; i < 3; i++) expect((await call("wrong-token-wrong-token", "127.0.0.1")).code).toBe(Code.Unauthenticated);
      expect(await call("wrong-token-wrong-token", "127.0.0.1")).toEqual({
        code: Code.ResourceExhausted,
        message: "too many failed attempts from this address: retry in 1s",
        retryAfter: "1",
      });
      expect((await call(ADMIN_TOKEN, "127.0.0.1")).code).toBe(Code.ResourceExhausted);
      expect((await call("wrong-token-wrong-token", "127.0.0.2")).code).toBe(Code.Unauthenticated);
      expect((await call(ADMIN_TOKEN, "127.0.0.3")).code).toBeUndefined();
      const flood = await Promise.all(Array.from({ length: 100 }, () => call("wrong-token-wrong-token", "127.0.0.1")));
      const checked = flood.filter((r) => r.code === Code.Unauthenticated).length; // a wait that ran out (see above)
      expect(checked).toBeLessThanOrEqual(3);
      expect(flood.filter((r) => r.code === Code.ResourceExhausted)).toHaveLength(100 - checked);
      expect(edge.relay.faults.limits().get("authFailuresBeforeBackoff")).toBe(102 - checked);
      // Asked from a source in good standing (the test's usual 127.0.0.1 is the one waiting).
      const events = (await admin(edge.url, ADMIN_TOKEN, "127.0.0.3").listAuditEvents({ pageSize: 1000 })).events;
      const refused = events.filter((e) => e.action === "admin.refused");
      const from = (address: string) => refused.filter((e) => e.details?.remoteAddress === address);
      expect(refused.every((e) => typeof e.details?.remoteAddress === "string")).toBe(true);
      expect(from("127.0.0.1").length).toBeLessThanOrEqual(10);
      expect(from("127.0.0.2")).toHaveLength(1);
    } finally {
      await edge.close();
    }
  });

  it("behind a --trust-proxy, counts the clients it forwards for, not the proxy", async () => {
    const edge = await startTestRelay({ trustedProxies: ["127.0.0.1"], limits: { authFailuresBeforeBackoff: 2, authBackoffMaxMs: 60_000 } });
    try {
      const code = (token: string, client: string) =>
        admin(edge.url, token, "127.0.0.1", client)
          .listTenants({})
          .then(() => undefined, (e: unknown) => ConnectError.from(e).code);
      for (let i = 0; i < 2; i++) expect(await code("wrong-token-wrong-token", "203.0.113.9")).toBe(Code.Unauthenticated);
      expect(await code(ADMIN_TOKEN, "203.0.113.9")).toBe(Code.ResourceExhausted);
      // Another client through the same balancer is not made to wait.
      expect(await code(ADMIN_TOKEN, "198.51.100.4")).toBeUndefined();
      const events = (await admin(edge.url, ADMIN_TOKEN, "127.0.0.1", "198.51.100.4").listAuditEvents({ pageSize: 100 })).events;
      expect(events.filter((e) => e.action === "admin.refused").map((e) => e.details?.remoteAddress)).toContain("203.0.113.9");
    } finally {
      await edge.close();
    }
  });
});
