import { generateKeyPairSync } from "node:crypto";
import { fromJson } from "@bufbuild/protobuf";
import { CompactSign, createLocalJWKSet, decodeProtectedHeader, type JSONWebKeySet, jwtVerify } from "jose";
import { connect, type KV, type NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { AccessPolicySchema } from "../../gen/ferry/access/v1/access_policy_pb.js";
import type { IdentityClaims } from "../../services/identity/identity-claims.js";
import { request } from "../helpers/http.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { type NatsServer, startNatsServer } from "../helpers/nats-server.js";
import { type SeenRequest, startTestTarget, type TestTarget } from "../helpers/targets.js";
import { eventually } from "../helpers/wait.js";

// X-Ferry-Identity end to end: a real relay signs it after the tenant's policy, a real connector carries it, a real
// target receives it and verifies it with jose against the JWKS the relay serves; in a cluster, against any node's.

const JWKS_PATH = "/.well-known/ferry/jwks.json";

async function fetchJwks(relayUrl: string): Promise<JSONWebKeySet> {
  const res = await fetch(`${relayUrl}${JWKS_PATH}`);
  expect(res.status).toBe(200);
  return (await res.json()) as JSONWebKeySet;
}

/** Verifies as a target would: jose, ES256 only, the identity's typ, issuer and audience, keys from the relay. */
async function verifyWith(relayUrl: string, jws: string, audience: string) {
  return jwtVerify<IdentityClaims>(jws, createLocalJWKSet(await fetchJwks(relayUrl)), { algorithms: ["ES256"], typ: "ferry-identity+jwt", issuer: "ferry", audience });
}

/** Every X-Ferry-Identity field the target received, whatever its case. */
function valuesOf(seen: SeenRequest): string[] {
  const out: string[] = [];
  for (let i = 0; i < seen.rawHeaders.length; i += 2) if (seen.rawHeaders[i]!.toLowerCase() === "x-ferry-identity") out.push(seen.rawHeaders[i + 1]!);
  return out;
}

/** An identity a client forges: well formed, signed with its own key, claiming to be anyone. */
async function forgedIdentity(): Promise<string> {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const now = Math.floor(Date.now() / 1000);
  const claims = { iss: "ferry", aud: "crm.acme", sub: "admin", auth: "apiKey", tenant: "acme", target: "crm", client_address: "10.0.0.1", iat: now, exp: now + 60, jti: "x" };
  return new CompactSign(Buffer.from(JSON.stringify(claims))).setProtectedHeader({ alg: "ES256", kid: "forged", typ: "ferry-identity+jwt" }).sign(privateKey);
}

describe("one relay", () => {
  let relay: TestRelay;
  let crm: TestTarget;
  let erp: TestTarget;
  let plain: TestTarget;
  let connectors: Connector[];

  beforeAll(async () => {
    relay = await startTestRelay({ baseDomain: "apps.test" });
    [crm, erp, plain] = await Promise.all([startTestTarget("crm"), startTestTarget("erp"), startTestTarget("plain")]);
    const acmeKey = await relay.tenantWithKey("acme");
    const plainKey = await relay.tenantWithKey("plain");
    connectors = await Promise.all([
      startTestConnector(relay.url, acmeKey, { crm: crm.url, erp: erp.url }, { tunnels: 1 }),
      startTestConnector(relay.url, plainKey, { app: plain.url }, { tunnels: 1 }),
    ]);
    // crm needs a client key; erp is named by no rule (public), but the tenant has a policy: its requests carry an identity too.
    await relay.admin.setAccessPolicy({ tenant: "acme", policy: fromJson(AccessPolicySchema, { rules: [{ name: "crm by key", targets: ["crm"], require: ["apiKey"] }] }) });
  });
  afterAll(async () => {
    await Promise.all((connectors ?? []).map((c) => c.stop()));
    await relay?.close();
    await Promise.all([crm?.close(), erp?.close(), plain?.close()]);
  });

  it("serves the JWKS: public keys only, cacheable for a minute; HEAD too; other methods 405", async () => {
    const res = await fetch(`${relay.url}${JWKS_PATH}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/jwk-set+json");
    expect(res.headers.get("cache-control")).toBe("public, max-age=60");
    const text = await res.text();
    const jwks = JSON.parse(text) as JSONWebKeySet;
    expect(jwks.keys).toHaveLength(1);
    expect(Object.keys(jwks.keys[0]!).sort()).toEqual(["alg", "crv", "kid", "kty", "use", "x", "y"]);
    expect(jwks.keys[0]).toMatchObject({ kty: "EC", crv: "P-256", alg: "ES256", use: "sig" });

    const head = await request(`${relay.url}${JWKS_PATH}`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers["content-length"]).toBe(String(Buffer.byteLength(text)));
    expect(head.body).toHaveLength(0);
    for (const [method, body] of [["POST", "{}"], ["PUT", "{}"], ["DELETE", undefined]] as const) {
      const r = await request(`${relay.url}${JWKS_PATH}`, { method, body });
      expect(r.status, method).toBe(405);
      expect(r.headers.allow).toBe("GET, HEAD");
    }
    // The query does not matter; the path does.
    expect((await request(`${relay.url}${JWKS_PATH}?x=1`)).status).toBe(200);
    expect((await request(`${relay.url}/.well-known/ferry/jwks.jsonx`)).status).toBe(404);
  });

  it("leaves the path to the target on a host-routed name: all of its paths are the app's", async () => {
    const before = crm.seen.length;
    const { secret } = await relay.admin.createClientKey({ tenant: "acme" });
    const r = await request(`${relay.url}${JWKS_PATH}`, { headers: { host: `crm.acme.apps.test:${relay.server.port}`, authorization: `Bearer ${secret}` } });
    // The test target's own 404 for a path it does not know, not the relay's key set.
    expect(r.status).toBe(404);
    expect(r.headers["content-type"]).toBe("text/plain");
    expect(crm.seen.length).toBe(before + 1);
    expect(crm.seen.at(-1)!.url).toBe(JWKS_PATH);
  });

  it("a client key: the target gets one identity, verified with jose against the relay's JWKS, with exactly the contract's claims", async () => {
    const { secret, key } = await relay.admin.createClientKey({ tenant: "acme" });
    const before = Math.floor(Date.now() / 1000);
    const r = await request(`${relay.url}/relay/acme/crm/json`, { headers: { authorization: `Bearer ${secret}` } });
    expect(r.status).toBe(200);
    const [identity, ...more] = valuesOf(crm.seen.at(-1)!);
    expect(more).toEqual([]);
    const { payload, protectedHeader } = await verifyWith(relay.url, identity!, "crm.acme");
    expect(protectedHeader).toEqual({ alg: "ES256", kid: (await fetchJwks(relay.url)).keys[0]!.kid, typ: "ferry-identity+jwt" });
    expect(payload).toEqual({
      iss: "ferry",
      aud: "crm.acme",
      sub: key!.keyId,
      auth: "apiKey",
      tenant: "acme",
      target: "crm",
      client_address: "127.0.0.1",
      rule: "crm by key",
      iat: expect.any(Number),
      exp: payload.iat! + 60,
      jti: expect.stringMatching(/^[A-Za-z0-9_-]{22}$/),
    });
    expect(payload.iat).toBeGreaterThanOrEqual(before);
    expect(payload.iat).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000));
    // Bound to its target: another audience refuses it.
    await expect(verifyWith(relay.url, identity!, "erp.acme")).rejects.toThrow(/aud/);
  });

  it("a public target under a policy: auth none, the client address as sub, no rule", async () => {
    const r = await request(`${relay.url}/relay/acme/erp/json`);
    expect(r.status).toBe(200);
    const [identity] = valuesOf(erp.seen.at(-1)!);
    const { payload } = await verifyWith(relay.url, identity!, "erp.acme");
    expect(payload).toEqual({
      iss: "ferry",
      aud: "erp.acme",
      sub: "127.0.0.1",
      auth: "none",
      tenant: "acme",
      target: "erp",
      client_address: "127.0.0.1",
      iat: payload.iat,
      exp: payload.iat! + 60,
      jti: payload.jti,
    });
    expect(payload).not.toHaveProperty("rule");
  });

  it("a client-sent X-Ferry-Identity never reaches the target: replaced under a policy, dropped without one", async () => {
    const forged = await forgedIdentity();
    const { secret } = await relay.admin.createClientKey({ tenant: "acme" });
    const sent = { "X-Ferry-Identity": forged, "x-ferry-identity": "garbage" };
    for (const [target, seen, headers] of [
      ["crm", crm, { ...sent, authorization: `Bearer ${secret}` }],
      ["erp", erp, sent],
    ] as const) {
      const r = await request(`${relay.url}/relay/acme/${target}/json`, { headers });
      expect(r.status, target).toBe(200);
      const got = valuesOf(seen.seen.at(-1)!);
      expect(got, target).toHaveLength(1);
      expect(got[0]).not.toBe(forged);
      expect((await verifyWith(relay.url, got[0]!, `${target}.acme`)).payload.sub).not.toBe("admin");
    }
    // Nor does the forged one verify against the relay's keys.
    await expect(verifyWith(relay.url, forged, "crm.acme")).rejects.toThrow();

    // Without a policy: no identity at all, neither the relay's nor the client's.
    const r = await request(`${relay.url}/relay/plain/app/json`, { headers: { "x-ferry-identity": forged } });
    expect(r.status).toBe(200);
    expect(valuesOf(plain.seen.at(-1)!)).toEqual([]);
  });

  it("a tenant without a policy: no identity header", async () => {
    const r = await request(`${relay.url}/relay/plain/app/json`);
    expect(r.status).toBe(200);
    expect(plain.seen.at(-1)!.headers["x-ferry-identity"]).toBeUndefined();
  });

  it("a refused client gets no identity (nothing reaches the target)", async () => {
    const before = crm.seen.length;
    expect((await request(`${relay.url}/relay/acme/crm/json`)).status).toBe(401);
    expect(crm.seen.length).toBe(before);
  });
});

describe("two cluster nodes", () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let kv: KV;
  let a: TestRelay;
  let b: TestRelay;
  let onA: TestTarget;
  let onB: TestTarget;
  let connectors: Connector[];
  let secret: string;
  let keyId: string;
  const node = (nodeId: string) => startTestRelay({ nats: { servers: [nats.url] }, nodeId });

  beforeAll(async () => {
    nats = await startNatsServer();
    [a, b] = await Promise.all([node("a"), node("b")]);
    [onA, onB] = await Promise.all([startTestTarget("on-a"), startTestTarget("on-b")]);
    nc = await connect({ servers: nats.url });
    kv = await nc.jetstream().views.kv("ferry_state", { bindOnly: true });
    await a.admin.createTenant({ name: "spread" });
    const keys = await Promise.all([a.admin.createKey({ tenant: "spread" }), a.admin.createKey({ tenant: "spread" })]);
    await eventually(() => keys.every((k) => b.relay.catalog.getKey(k.key!.keyId) !== undefined), "connector keys on B");
    // One connector on each node: a request entering at B goes to A's connector through NATS, or to B's own.
    connectors = await Promise.all([
      startTestConnector(a.url, keys[0]!.secret, { "on-a": onA.url }, { tunnels: 1 }),
      startTestConnector(b.url, keys[1]!.secret, { "on-b": onB.url }, { tunnels: 1 }),
    ]);
    await eventually(async () => (await b.admin.listConnectors({ tenant: "spread" })).connectors.length === 2, "both connectors visible on B");
    await a.admin.setAccessPolicy({ tenant: "spread", policy: fromJson(AccessPolicySchema, { rules: [{ name: "machines", targets: ["*"], require: ["apiKey"] }] }) });
    const created = await a.admin.createClientKey({ tenant: "spread" });
    secret = created.secret;
    keyId = created.key!.keyId;
    await eventually(
      () => b.relay.catalog.accessPolicies.getAccessPolicy("spread") !== undefined && b.relay.catalog.clientKeys.checkClientKey(secret).ok,
      "policy and client key on B",
    );
  });
  afterAll(async () => {
    await nc?.close();
    await Promise.all((connectors ?? []).map((c) => c.stop()));
    await Promise.all([a, b].map((r) => r?.close()));
    await Promise.all([onA?.close(), onB?.close()]);
    await nats?.close();
  });

  /** The node whose key signed the identity, from the record in the shared bucket. */
  async function signerOf(jws: string): Promise<string> {
    const entry = await kv.get(`identity-key.${decodeProtectedHeader(jws).kid}`);
    return (entry!.json() as { nodeId: string }).nodeId;
  }

  it("every node serves the same key set: its own key and the other's", async () => {
    await eventually(async () => (await fetchJwks(a.url)).keys.length === 2 && (await fetchJwks(b.url)).keys.length === 2, "both keys on both nodes");
    const [ja, jb] = await Promise.all([fetchJwks(a.url), fetchJwks(b.url)]);
    expect(ja).toEqual(jb);
    const owners = await Promise.all(ja.keys.map(async (k) => ((await kv.get(`identity-key.${k.kid}`))!.json() as { nodeId: string }).nodeId));
    expect(owners.sort()).toEqual(["a", "b"]);
  });

  it("a node that joins later is in the others' key set within a second (the store's watch), and stays there after it stops", async () => {
    const c = await node("c");
    const started = Date.now();
    let kid: string | undefined;
    try {
      const own = await Promise.all((await fetchJwks(c.url)).keys.map(async (k) => [k.kid, ((await kv.get(`identity-key.${k.kid}`))!.json() as { nodeId: string }).nodeId] as const));
      kid = own.find(([, n]) => n === "c")![0];
      await eventually(async () => (await fetchJwks(a.url)).keys.some((k) => k.kid === kid), "C's key on A", 1000);
      expect(Date.now() - started).toBeLessThan(1000);
    } finally {
      await c.close();
    }
    // Identities C signed may still be in flight: its key is kept (expiring in 10 minutes), not deleted.
    const record = (await kv.get(`identity-key.${kid}`))!.json() as { expireTime: string; signUntil: string };
    expect(Date.parse(record.expireTime) - Date.parse(record.signUntil)).toBe(10 * 60_000);
    expect((await fetchJwks(a.url)).keys.map((k) => k.kid)).toContain(kid);
  });

  it.each([
    ["A's connector", "on-a", () => onA],
    ["B's own connector", "on-b", () => onB],
  ])("a request entering at B for %s carries B's identity, which verifies against A's JWKS", async (_, target, targetOf) => {
    const r = await request(`${b.url}/relay/spread/${target}/json`, { headers: { authorization: `Bearer ${secret}`, "x-ferry-identity": await forgedIdentity() } });
    expect(r.status).toBe(200);
    const got = valuesOf(targetOf().seen.at(-1)!);
    expect(got).toHaveLength(1);
    expect(await signerOf(got[0]!)).toBe("b");
    const { payload } = await verifyWith(a.url, got[0]!, `${target}.spread`);
    expect(payload).toMatchObject({ sub: keyId, auth: "apiKey", tenant: "spread", target, rule: "machines", client_address: "127.0.0.1" });
  });

  it("and the other way round: entering at A, signed by A, verified against B's JWKS", async () => {
    const r = await request(`${a.url}/relay/spread/on-b/json`, { headers: { authorization: `Bearer ${secret}` } });
    expect(r.status).toBe(200);
    const [identity] = valuesOf(onB.seen.at(-1)!);
    expect(await signerOf(identity!)).toBe("a");
    expect((await verifyWith(b.url, identity!, "on-b.spread")).payload.sub).toBe(keyId);
  });
});
