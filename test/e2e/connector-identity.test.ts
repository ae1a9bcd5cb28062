import { create, fromJson } from "@bufbuild/protobuf";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import type { ServerHttp2Stream } from "node:http2";
import { join } from "node:path";
import { createRemoteJWKSet, exportJWK, generateKeyPair, type JWK, type JWTPayload, jwtVerify, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import type { AuditRecord } from "../../clients/connector/exchange-audit.js";
import { RELAY_JWKS_PATH } from "../../clients/connector/relay-jwks.js";
import { newExchangeId } from "../../core/exchange/ids.js";
import { AccessPolicySchema } from "../../gen/ferry/access/v1/access_policy_pb.js";
import { type Header, HeaderSchema, type RequestHead } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { frame, HostileRelay, type HostileTunnel, requestHead } from "../helpers/hostile-relay.js";
import { json, type Reply, request } from "../helpers/http.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { tempDir } from "../helpers/processes.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { eventually, until } from "../helpers/wait.js";

// A connector target with requireIdentity takes only requests that carry an X-Ferry-Identity the relay signed
// for it: a request that reached the connector without one (a route that skipped the policy), with a forged one,
// or with one for another target or tenant is refused at the connector (403), and nothing of it reaches the target.

const KEY = `fck_0123456789abcdef_${"A".repeat(43)}`;

interface RelayKey {
  kid: string;
  privateKey: Awaited<ReturnType<typeof generateKeyPair>>["privateKey"];
  jwk: JWK;
}

async function newKey(): Promise<RelayKey> {
  const pair = await generateKeyPair("ES256", { extractable: true });
  const kid = randomBytes(8).toString("base64url");
  return { kid, privateKey: pair.privateKey, jwk: { ...(await exportJWK(pair.publicKey)), kid, alg: "ES256", use: "sig" } };
}

/** An identity as the relay signs it, for `target` of tenant acme unless `claims` say otherwise. */
async function identity(key: RelayKey, target: string, claims: JWTPayload = {}, signWith = key.privateKey): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({
    iss: "ferry",
    aud: `${target}.acme`,
    sub: "ck_0123456789abcdef",
    auth: "apiKey",
    tenant: "acme",
    target,
    client_address: "203.0.113.9",
    iat: now,
    exp: now + 60,
    jti: randomBytes(16).toString("base64url"),
    ...claims,
  })
    .setProtectedHeader({ alg: "ES256", kid: key.kid, typ: "ferry-identity+jwt" })
    .sign(signWith);
}

/** Serves `keys()` at the fake relay's /.well-known/ferry/jwks.json, counting the GETs. */
function serveJwks(relay: HostileRelay, keys: () => JWK[]): { gets: number } {
  const served = { gets: 0 };
  relay.routes.set(RELAY_JWKS_PATH, (stream) => {
    served.gets++;
    stream.respond({ ":status": 200, "content-type": "application/jwk-set+json" });
    stream.end(JSON.stringify({ keys: keys() }));
  });
  return served;
}

function h(name: string, value: string): Header {
  return create(HeaderSchema, { name, value });
}

const head = (init: Partial<RequestHead> = {}) => requestHead("crm", init);

interface Answer {
  status: number;
  body: string;
}

/** Sends a request the way a relay would and collects the connector's answer (a reset fails the test). */
async function ask(tunnel: HostileTunnel, h0: RequestHead, body?: Buffer): Promise<Answer> {
  const id = newExchangeId();
  const frames = [frame(id, { case: "requestHead", value: h0 })];
  if (body) {
    frames.push(frame(id, { case: "data", value: { $typeName: "ferry.tunnel.v1.Data", chunk: body } }));
    frames.push(frame(id, { case: "end", value: { $typeName: "ferry.tunnel.v1.End", trailers: [] } }));
  }
  tunnel.sendFrames(frames);
  const first = await tunnel.frameOf(id, (f) => f.kind.case === "responseHead" || f.kind.case === "reset");
  if (first.kind.case !== "responseHead") throw new Error(`the connector reset the exchange: ${JSON.stringify(first.kind.value)}`);
  const status = first.kind.value.status;
  if (first.kind.value.endStream) return { status, body: "" };
  await tunnel.frameOf(id, (f) => f.kind.case === "end" || f.kind.case === "reset");
  const mine = tunnel.frames().filter((f) => Buffer.from(f.exchangeId).equals(Buffer.from(id)));
  const chunks = mine.flatMap((f) => (f.kind.case === "data" ? [Buffer.from(f.kind.value.chunk)] : []));
  return { status, body: Buffer.concat(chunks).toString("utf8") };
}

const codeOf = (a: Answer) => (JSON.parse(a.body) as { error: { code: string } }).error.code;

/** A fake relay (test/helpers/hostile-relay.ts) and a connector on it whose target crm requires an identity. */
async function connectorOn(relay: HostileRelay, target: TestTarget, flags: { auditLog?: string } = {}): Promise<{ connector: Connector; tunnel: HostileTunnel }> {
  const started = startTestConnector(relay.url, KEY, { crm: { url: target.url, requireIdentity: true }, open: { url: target.url } }, { tunnels: 1, flags });
  const tunnel = (await relay.tunnelsUp(1))[0]!;
  return { connector: await started, tunnel };
}

describe("requireIdentity at the connector, from a relay written from the protocol", () => {
  let relay: HostileRelay;
  let target: TestTarget;
  let connector: Connector;
  let tunnel: HostileTunnel;
  let relayKey: RelayKey;
  let jwks: { gets: number };
  const auditLog = join(tempDir(), "audit.jsonl");

  beforeAll(async () => {
    relayKey = await newKey();
    relay = await HostileRelay.start({ tenant: "acme" });
    jwks = serveJwks(relay, () => [relayKey.jwk]);
    target = await startTestTarget("crm");
    ({ connector, tunnel } = await connectorOn(relay, target, { auditLog }));
  });

  afterAll(async () => {
    await connector?.stop();
    await relay?.close();
    await target?.close();
  });

  it("refuses requests without X-Ferry-Identity with 403 identity_required; nothing reaches the target", async () => {
    const seen = target.seen.length;
    const plain = await ask(tunnel, head());
    expect(plain.status).toBe(403);
    expect(codeOf(plain)).toBe("identity_required");
    const upload = await ask(tunnel, head({ method: "POST", path: "/echo", endStream: false }), Buffer.from("not for the target"));
    expect(upload.status).toBe(403);
    // A WebSocket upgrade too: the connector answers it before any connection to the target.
    const upgrade = await ask(
      tunnel,
      head({ upgrade: true, endStream: false, headers: [h("upgrade", "websocket"), h("connection", "upgrade"), h("sec-websocket-version", "13"), h("sec-websocket-key", randomBytes(16).toString("base64"))] }),
    );
    expect(upgrade.status).toBe(403);
    expect(target.seen.length).toBe(seen);
  });

  it("refuses a forged identity, and one for another tenant or target, with 403 identity_invalid", async () => {
    const seen = target.seen.length;
    const forger = await newKey();
    const cases: Array<[string, string]> = [
      ["signed by another key under the relay's kid", await identity(relayKey, "crm", {}, forger.privateKey)],
      ["for another tenant", await identity(relayKey, "crm", { aud: "crm.other", tenant: "other" })],
      ["for another target", await identity(relayKey, "open")],
      ["expired", await identity(relayKey, "crm", { iat: Math.floor(Date.now() / 1000) - 300, exp: Math.floor(Date.now() / 1000) - 240 })],
      ["not a JWS", "not.a.jws"],
    ];
    for (const [what, token] of cases) {
      const answer = await ask(tunnel, head({ headers: [h("x-ferry-identity", token)] }));
      expect(answer.status, what).toBe(403);
      expect(codeOf(answer), what).toBe("identity_invalid");
    }
    expect(target.seen.length).toBe(seen);
  });

  it("lets a valid identity through to the target, which receives it (it may verify it itself)", async () => {
    const token = await identity(relayKey, "crm");
    const answer = await ask(tunnel, head({ headers: [h("x-ferry-identity", token)] }));
    expect(answer.status).toBe(200);
    expect(target.seen.at(-1)!.headers["x-ferry-identity"]).toBe(token);
    // The keys came from the relay's origin, once, and stay cached.
    expect(jwks.gets).toBe(1);
    expect((await ask(tunnel, head({ headers: [h("x-ferry-identity", await identity(relayKey, "crm"))] }))).status).toBe(200);
    expect(jwks.gets).toBe(1);
  });

  it("leaves a target without requireIdentity as it was", async () => {
    const answer = await ask(tunnel, head({ target: "open" }));
    expect(answer.status).toBe(200);
  });

  it("records each refusal in the audit log with its outcome", async () => {
    const lines = () => (existsSync(auditLog) ? readFileSync(auditLog, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as AuditRecord) : []);
    await eventually(() => lines().some((l) => l.outcome === "identity_invalid") && lines().some((l) => l.outcome === "identity_required"), "the refusals in the audit log");
    const outcomes = new Set(lines().map((l) => l.outcome));
    expect(outcomes).toEqual(new Set(["identity_required", "identity_invalid", "ok"]));
    expect(lines().find((l) => l.outcome === "identity_required")).toMatchObject({ target: "crm", status: 403 });
  });
});

describe("requireIdentity when the relay's keys cannot be had, or come late", () => {
  let target: TestTarget;
  let relayKey: RelayKey;

  beforeAll(async () => {
    target = await startTestTarget("crm");
    relayKey = await newKey();
  });

  afterAll(async () => {
    await target?.close();
  });

  it("answers 503 identity_unavailable when the relay does not serve its keys", async () => {
    const relay = await HostileRelay.start({ tenant: "acme" });
    relay.routes.set(RELAY_JWKS_PATH, (stream) => stream.respond({ ":status": 503 }, { endStream: true }));
    const { connector, tunnel } = await connectorOn(relay, target);
    try {
      const seen = target.seen.length;
      const answer = await ask(tunnel, head({ headers: [h("x-ferry-identity", await identity(relayKey, "crm"))] }));
      expect(answer.status).toBe(503);
      expect(codeOf(answer)).toBe("identity_unavailable");
      expect(target.seen.length).toBe(seen);
    } finally {
      await connector.stop();
      await relay.close();
    }
  });

  it("lets go of an exchange reset while its identity waits for the keys: nothing is held, nothing reaches the target", async () => {
    const relay = await HostileRelay.start({ tenant: "acme" });
    const held: ServerHttp2Stream[] = [];
    relay.routes.set(RELAY_JWKS_PATH, (stream) => void held.push(stream));
    const { connector, tunnel } = await connectorOn(relay, target);
    try {
      const seen = target.seen.length;
      const id = newExchangeId();
      const token = await identity(relayKey, "crm");
      tunnel.sendFrames([
        frame(id, { case: "requestHead", value: head({ method: "POST", path: "/echo", endStream: false, headers: [h("x-ferry-identity", token)] }) }),
        frame(id, { case: "data", value: { $typeName: "ferry.tunnel.v1.Data", chunk: Buffer.alloc(16 * 1024) } }),
      ]);
      await until(() => held.length === 1);
      expect(connector.status().inFlight).toBe(1);
      tunnel.sendFrames([frame(id, { case: "reset", value: { $typeName: "ferry.tunnel.v1.Reset", code: 1, message: "client gone" } })]);
      // Let go at once, while the key fetch it waited for is still open.
      await eventually(() => connector.status().inFlight === 0, "the connector to let go of the reset exchange");
      held[0]!.respond({ ":status": 200, "content-type": "application/jwk-set+json" });
      held[0]!.end(JSON.stringify({ keys: [relayKey.jwk] }));
      // The keys are in: the next request is served, the reset one never was.
      const next = await ask(tunnel, head({ headers: [h("x-ferry-identity", await identity(relayKey, "crm"))] }));
      expect(next.status).toBe(200);
      expect(target.seen.length).toBe(seen + 1);
      expect(target.seen.at(-1)!.method).toBe("GET");
      expect(tunnel.frames().some((f) => Buffer.from(f.exchangeId).equals(Buffer.from(id)) && f.kind.case === "responseHead")).toBe(false);
    } finally {
      await connector.stop();
      await relay.close();
    }
  });
});

describe("requireIdentity with the real relay (services/identity signs, /.well-known/ferry/jwks.json)", () => {
  let relay: TestRelay;
  let crm: TestTarget;
  let acmeConnector: Connector;
  let bareConnector: Connector;
  let clientKey: string;

  beforeAll(async () => {
    relay = await startTestRelay();
    crm = await startTestTarget("crm");
    const acmeKey = await relay.tenantWithKey("acme");
    const bareKey = await relay.tenantWithKey("bare");
    await relay.admin.setAccessPolicy({
      tenant: "acme",
      policy: fromJson(AccessPolicySchema, { rules: [{ name: "crm by key", targets: ["crm"], require: ["apiKey"] }] }),
    });
    clientKey = (await relay.admin.createClientKey({ tenant: "acme" })).secret;
    const targets = { crm: { url: crm.url, requireIdentity: true }, erp: { url: crm.url, requireIdentity: true } };
    acmeConnector = await startTestConnector(relay.url, acmeKey, targets, { tunnels: 1 });
    // A tenant without a policy: the relay signs nothing for it, as for a route that skipped the policy.
    bareConnector = await startTestConnector(relay.url, bareKey, targets, { tunnels: 1 });
  });

  afterAll(async () => {
    await acmeConnector?.stop();
    await bareConnector?.stop();
    await relay?.close();
    await crm?.close();
  });

  const errorCode = (r: Reply) => json<{ error: { code: string } }>(r).error.code;

  it("serves a request the policy let through, with an identity the target can verify against the relay's keys", async () => {
    const reply = await request(`${relay.url}/relay/acme/crm/json`, { headers: { authorization: `Bearer ${clientKey}` } });
    expect(reply.status).toBe(200);
    const token = String(crm.seen.at(-1)!.headers["x-ferry-identity"]);
    const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(`${relay.url}${RELAY_JWKS_PATH}`)), {
      issuer: "ferry",
      audience: "crm.acme",
      typ: "ferry-identity+jwt",
      algorithms: ["ES256"],
    });
    expect(payload).toMatchObject({ tenant: "acme", target: "crm", auth: "apiKey" });
    // A target no rule names: the check ran (the tenant has a policy), so it has an identity too.
    expect((await request(`${relay.url}/relay/acme/erp/json`)).status).toBe(200);
  });

  it("refuses at the connector what came without the policy (a tenant without one), whatever the client sent", async () => {
    const seen = crm.seen.length;
    const missing = await request(`${relay.url}/relay/bare/crm/json`);
    expect(missing.status).toBe(403);
    expect(errorCode(missing)).toBe("identity_required");
    // The relay removes a client's own X-Ferry-Identity: a forged one never gets as far as being checked.
    const forged = await request(`${relay.url}/relay/bare/crm/json`, { headers: { "x-ferry-identity": await identity(await newKey(), "crm", { aud: "crm.bare", tenant: "bare" }) } });
    expect(forged.status).toBe(403);
    expect(errorCode(forged)).toBe("identity_required");
    expect(crm.seen.length).toBe(seen);
  });

  it("replaces a client's own X-Ferry-Identity with the relay's", async () => {
    const forged = await identity(await newKey(), "crm");
    const reply = await request(`${relay.url}/relay/acme/crm/json`, { headers: { authorization: `Bearer ${clientKey}`, "x-ferry-identity": forged } });
    expect(reply.status).toBe(200);
    expect(crm.seen.at(-1)!.headers["x-ferry-identity"]).not.toBe(forged);
  });
});
