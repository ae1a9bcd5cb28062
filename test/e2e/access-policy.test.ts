import { fromJson } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import type { Connector } from "../../clients/connector/connector.js";
import { AccessPolicySchema } from "../../gen/ferry/access/v1/access_policy_pb.js";
import { hashPassword } from "../../services/access/basic-auth.js";
import { h2c, h2request, json, type Reply, request } from "../helpers/http.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { DEFAULT_AUDIENCE, startOidcProvider, type TestOidcProvider } from "../helpers/oidc-provider.js";
import { ADMIN_TOKEN } from "../helpers/processes.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";

// Who may talk, end to end on one node: the tenant's policy applied at the relay before any exchange, so a refused
// client reaches nothing, and a granted one reaches the target without the credential it was let in with.

let relay: TestRelay;
let crm: TestTarget;
let erp: TestTarget;
let connector: Connector;
let otherTenantKey: string;
let connectorKey: string;
let idp: TestOidcProvider;

beforeAll(async () => {
  // 127.0.0.1 is a trusted proxy here: its X-Forwarded-For names the client (the IP rules).
  relay = await startTestRelay({ trustedProxies: ["127.0.0.1"] });
  [crm, erp, idp] = await Promise.all([startTestTarget("crm"), startTestTarget("erp"), startOidcProvider()]);
  connectorKey = await relay.tenantWithKey("acme");
  await relay.tenantWithKey("other");
  otherTenantKey = (await relay.admin.createClientKey({ tenant: "other" })).secret;
  connector = await startTestConnector(relay.url, connectorKey, { crm: crm.url, erp: erp.url }, { tunnels: 1 });
});

afterAll(async () => {
  await connector?.stop();
  await relay?.close();
  await Promise.all([crm?.close(), erp?.close(), idp?.close()]);
});

async function setPolicy(policy: unknown): Promise<void> {
  await relay.admin.setAccessPolicy({ tenant: "acme", policy: fromJson(AccessPolicySchema, policy as never) });
}

const errorCode = (r: Reply) => json<{ error: { code: string } }>(r).error.code;
const get = (target: string, path = "/json", headers: Record<string, string> = {}) => request(`${relay.url}/relay/acme/${target}${path}`, { headers });

describe("client access policies", () => {
  it("leaves a tenant without a policy public", async () => {
    await setPolicy({});
    expect((await get("crm")).status).toBe(200);
  });

  it("asks for a client key, lets the right one in, and never hands it to the target", async () => {
    await setPolicy({ rules: [{ name: "crm by key", targets: ["crm"], require: ["apiKey"] }] });
    const { secret, key } = await relay.admin.createClientKey({ tenant: "acme", description: "partner" });
    const seenBefore = crm.seen.length;

    const missing = await get("crm");
    expect(missing.status).toBe(401);
    expect(errorCode(missing)).toBe("credential_missing");
    expect(String(missing.headers["www-authenticate"])).toMatch(/^Bearer realm="ferry"/);
    expect(crm.seen.length).toBe(seenBefore);

    for (const wrong of [connectorKey, otherTenantKey, "fcl_0000000000000000_nope"]) {
      const r = await get("crm", "/json", { authorization: `Bearer ${wrong}` });
      expect(r.status, wrong.slice(0, 4)).toBe(401);
      expect(String(r.headers["www-authenticate"])).toContain('error="invalid_token"');
    }
    expect(crm.seen.length).toBe(seenBefore);

    const ok = await get("crm", "/json", { authorization: `Bearer ${secret}` });
    expect(ok.status).toBe(200);
    const seen = crm.seen.at(-1)!;
    expect(seen.headers.authorization).toBeUndefined();
    expect(JSON.stringify(seen.rawHeaders)).not.toContain(secret);

    // A target no rule names stays public.
    expect((await get("erp")).status).toBe(200);

    await relay.admin.revokeClientKey({ tenant: "acme", keyId: key!.keyId });
    expect((await get("crm", "/json", { authorization: `Bearer ${secret}` })).status).toBe(401);
  });

  it("keeps a key to the targets it was made for", async () => {
    await setPolicy({ rules: [{ targets: ["*"], require: ["apiKey"] }] });
    const { secret } = await relay.admin.createClientKey({ tenant: "acme", targets: ["erp"] });
    expect((await get("erp", "/json", { authorization: `Bearer ${secret}` })).status).toBe(200);
    const crmReply = await get("crm", "/json", { authorization: `Bearer ${secret}` });
    expect(crmReply.status).toBe(403);
  });

  it("takes a key in the header the rule names", async () => {
    await setPolicy({ rules: [{ targets: ["crm"], require: ["apiKey"], apiKeyHeader: "X-Api-Key" }] });
    const { secret } = await relay.admin.createClientKey({ tenant: "acme" });
    expect((await get("crm", "/json", { authorization: `Bearer ${secret}` })).status).toBe(401);
    expect((await get("crm", "/json", { "x-api-key": secret })).status).toBe(200);
    expect(crm.seen.at(-1)!.headers["x-api-key"]).toBeUndefined();
  });

  it("applies the first rule whose target and path match", async () => {
    await setPolicy({
      rules: [
        { targets: ["crm"], paths: ["/json"] },
        { targets: ["crm"], require: ["apiKey"] },
      ],
    });
    expect((await get("crm", "/json")).status).toBe(200);
    // Segment-aware: /jsonx is not under /json, so the second rule applies.
    expect((await get("crm", "/jsonx")).status).toBe(401);
    expect((await get("crm", "/echo")).status).toBe(401);
  });

  it("lets in only the addresses a rule allows, and none it denies", async () => {
    await setPolicy({ rules: [{ targets: ["crm"], allowIps: ["203.0.113.0/24", "2001:db8::/32"], denyIps: ["203.0.113.66"] }] });
    expect((await get("crm", "/json", { "x-forwarded-for": "203.0.113.7" })).status).toBe(200);
    expect((await get("crm", "/json", { "x-forwarded-for": "2001:db8::1" })).status).toBe(200);
    const denied = await get("crm", "/json", { "x-forwarded-for": "203.0.113.66" });
    expect(denied.status).toBe(403);
    expect(errorCode(denied)).toBe("ip_denied");
    const outside = await get("crm", "/json", { "x-forwarded-for": "198.51.100.1" });
    expect(outside.status).toBe(403);
    expect(errorCode(outside)).toBe("ip_not_allowed");
    // The socket itself (127.0.0.1) is not in the list either.
    expect((await get("crm")).status).toBe(403);
  });

  it("limits the rate per client with 429, Retry-After and RateLimit headers", async () => {
    await setPolicy({ rules: [{ targets: ["crm"], rateLimit: { requests: 3, per: "60s", by: "ip" } }] });
    const from = (ip: string) => get("crm", "/json", { "x-forwarded-for": ip });
    for (let i = 0; i < 3; i++) expect((await from("192.0.2.1")).status).toBe(200);
    const limited = await from("192.0.2.1");
    expect(limited.status).toBe(429);
    expect(errorCode(limited)).toBe("rate_limited");
    expect(Number(limited.headers["retry-after"])).toBeGreaterThan(0);
    expect(Object.keys(limited.headers).some((h) => h.startsWith("ratelimit"))).toBe(true);
    // Another client has its own bucket.
    expect((await from("192.0.2.2")).status).toBe(200);
  });

  it("takes tokens from the tenant's identity provider, with the claims the rule wants", async () => {
    await setPolicy({ rules: [{ targets: ["crm"], require: ["jwt"], jwt: { issuer: idp.issuer, audience: [DEFAULT_AUDIENCE], claims: { groups: "crm-users" } } }] });
    const bearer = async (claims: Record<string, unknown>) => ({ authorization: `Bearer ${await idp.tokenFor("ferry-test", { claims })}` });
    const ok = await get("crm", "/json", await bearer({ groups: ["staff", "crm-users"] }));
    expect(ok.status).toBe(200);
    expect(crm.seen.at(-1)!.headers.authorization).toBeUndefined();

    const noClaim = await get("crm", "/json", await bearer({ groups: ["staff"] }));
    expect(noClaim.status).toBe(403);
    expect(errorCode(noClaim)).toBe("jwt_claims");
    const expired = await get("crm", "/json", { authorization: `Bearer ${await idp.tokenFor("ferry-test", { expiresIn: -120, claims: { groups: "crm-users" } })}` });
    expect(expired.status).toBe(401);
    expect(String(expired.headers["www-authenticate"])).toContain('error="invalid_token"');
    const missing = await get("crm");
    expect(missing.status).toBe(401);

    // An app that reads the token itself gets it.
    await setPolicy({ rules: [{ targets: ["crm"], require: ["jwt"], jwt: { issuer: idp.issuer, audience: [DEFAULT_AUDIENCE], forward: true } }] });
    const token = await idp.tokenFor("ferry-test");
    expect((await get("crm", "/json", { authorization: `Bearer ${token}` })).status).toBe(200);
    expect(crm.seen.at(-1)!.headers.authorization).toBe(`Bearer ${token}`);
  });

  it("lets CORS preflights through without credentials", async () => {
    await setPolicy({ rules: [{ targets: ["crm"], require: ["apiKey"] }] });
    const preflight = await request(`${relay.url}/relay/acme/crm/json`, {
      method: "OPTIONS",
      headers: { origin: "https://app.example.com", "access-control-request-method": "GET", "access-control-request-headers": "authorization" },
    });
    expect(preflight.status).not.toBe(401);
    expect(crm.seen.at(-1)!.method).toBe("OPTIONS");
    // A plain OPTIONS is no preflight.
    expect((await request(`${relay.url}/relay/acme/crm/json`, { method: "OPTIONS" })).status).toBe(401);
  });

  it("takes HTTP Basic users, and removes the password before the target", async () => {
    const passwordHash = await hashPassword("correct horse battery staple");
    await setPolicy({ rules: [{ targets: ["crm"], require: ["basic"], basicUsers: [{ name: "plc-7", passwordHash }] }] });
    const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
    const missing = await get("crm");
    expect(missing.status).toBe(401);
    expect(String(missing.headers["www-authenticate"])).toMatch(/Basic realm="ferry"/);
    expect((await get("crm", "/json", { authorization: basic("plc-7", "wrong") })).status).toBe(401);
    expect((await get("crm", "/json", { authorization: basic("plc-7", "correct horse battery staple") })).status).toBe(200);
    expect(crm.seen.at(-1)!.headers.authorization).toBeUndefined();
  });

  it("checks a WebSocket upgrade before anything reaches the target", async () => {
    await setPolicy({ rules: [{ targets: ["crm"], require: ["apiKey"] }] });
    const seenBefore = crm.seen.length;
    const status = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(`${relay.url.replace("http", "ws")}/relay/acme/crm/ws`);
      ws.once("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
      ws.once("open", () => reject(new Error("the upgrade went through")));
      ws.once("error", () => {});
    });
    expect(status).toBe(401);
    expect(crm.seen.length).toBe(seenBefore);
  });

  it("answers a gRPC client in gRPC: UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED", async () => {
    const session = h2c(relay.url);
    try {
      const call = (headers: Record<string, string> = {}) =>
        h2request(session, "/relay/acme/crm/pkg.Service/Method", { method: "POST", body: "", headers: { "content-type": "application/grpc", te: "trailers", ...headers } });
      await setPolicy({ rules: [{ targets: ["crm"], require: ["apiKey"] }] });
      expect((await call()).headers["grpc-status"]).toBe("16");
      await setPolicy({ rules: [{ targets: ["crm"], denyIps: ["127.0.0.1"] }] });
      expect((await call()).headers["grpc-status"]).toBe("7");
      await setPolicy({ rules: [{ targets: ["crm"], rateLimit: { requests: 1, per: "60s", by: "rule" } }] });
      await call();
      expect((await call()).headers["grpc-status"]).toBe("8");
    } finally {
      session.close();
    }
  });

  it("counts refusals in /metrics and audits them", async () => {
    await setPolicy({ rules: [{ targets: ["crm"], require: ["apiKey"] }] });
    // From an address of its own: the audit keeps at most a few refusals per source a minute.
    await get("crm", "/json", { "x-forwarded-for": "198.51.100.77" });
    const metrics = await request(`${relay.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(metrics.body.toString()).toMatch(/ferry_access_denied_total\{tenant="acme",reason="credential_missing"\} [1-9]/);
    const { events } = await relay.admin.listAuditEvents({ tenant: "acme", pageSize: 1000 });
    const refused = events.find((e) => e.action === "client.refused" && e.details?.remoteAddress === "198.51.100.77");
    expect(refused?.details).toMatchObject({ reason: "credential_missing", target: "crm", path: "/json" });
    expect(refused?.actor).toBe("client:198.51.100.77");
  });
});
