import { create } from "@bufbuild/protobuf";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createSecureServer, createServer, type Http2SecureServer, type Http2Server, type Http2Session, type ServerHttp2Stream } from "node:http2";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT, UnsecuredJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createIdentityCheck, type IdentityCheckOptions, type TunnelOrigin } from "../../clients/connector/identity-check.js";
import { RELAY_JWKS_PATH } from "../../clients/connector/relay-jwks.js";
import { type Header, HeaderSchema } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { makeTestPki, type TestPki } from "../helpers/certs.js";
import { startTinyproxy, type Tinyproxy } from "../helpers/tinyproxy.js";
import { eventually } from "../helpers/wait.js";

// The connector's check of X-Ferry-Identity, against real ES256 keys served as a JWKS by a small local
// HTTP/2 server (the relay's port speaks HTTP/2, so the connector fetches with it): every way a token can be
// wrong is refused, keys are refetched for an unknown kid but throttled, and keys that cannot be had answer 503.

type KeyPair = Awaited<ReturnType<typeof generateKeyPair>>;
interface RelayKey {
  kid: string;
  pair: KeyPair;
  jwk: JWK;
}

/** What the JWKS server answers: the keys, an error status, a body past the limit, or nothing at all. */
type Mode = "keys" | "error" | "oversized" | "hang";

interface JwksServer {
  url: string;
  keys: RelayKey[];
  mode: Mode;
  /** GETs of the JWKS so far. */
  requests: number;
  /** When each GET arrived (Date.now()). */
  times: number[];
  close(): Promise<void>;
}

async function startJwksServer(tls?: TestPki): Promise<JwksServer> {
  const sessions = new Set<Http2Session>();
  const held: ServerHttp2Stream[] = [];
  const server: Http2Server | Http2SecureServer = tls ? createSecureServer({ cert: readFileSync(tls.cert), key: readFileSync(tls.key) }) : createServer();
  const s: JwksServer = {
    url: "",
    keys: [],
    mode: "keys",
    requests: 0,
    times: [],
    async close() {
      for (const stream of held) stream.destroy();
      for (const session of sessions) session.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  server.on("session", (session: Http2Session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  server.on("stream", (stream: ServerHttp2Stream, headers) => {
    stream.on("error", () => {});
    if (headers[":path"] !== RELAY_JWKS_PATH) return stream.respond({ ":status": 404 }, { endStream: true });
    s.requests++;
    s.times.push(Date.now());
    if (s.mode === "hang") return void held.push(stream);
    if (s.mode === "error") return stream.respond({ ":status": 500 }, { endStream: true });
    const keys = s.keys.map((k) => k.jwk);
    // Past 64 KiB: a key set padded with keys no verifier needs.
    const padding = s.mode === "oversized" ? Array.from({ length: 800 }, (_, i) => ({ kty: "oct", kid: `pad-${i}`, k: "A".repeat(80) })) : [];
    stream.respond({ ":status": 200, "content-type": "application/jwk-set+json", "cache-control": "public, max-age=60" });
    stream.end(JSON.stringify({ keys: [...keys, ...padding] }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  s.url = `${tls ? "https" : "http"}://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return s;
}

async function newKey(): Promise<RelayKey> {
  const pair = await generateKeyPair("ES256", { extractable: true });
  const kid = randomBytes(8).toString("base64url");
  return { kid, pair, jwk: { ...(await exportJWK(pair.publicKey)), kid, alg: "ES256", use: "sig" } };
}

/** An identity as the relay signs it (docs/access.md), with `claims` and `header` overriding. */
async function identity(key: RelayKey, claims: JWTPayload = {}, header: Record<string, unknown> = {}, signWith = key.pair.privateKey): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({
    iss: "ferry",
    aud: "crm.acme",
    sub: "ck_0123456789abcdef",
    auth: "apiKey",
    tenant: "acme",
    target: "crm",
    client_address: "203.0.113.9",
    iat: now,
    exp: now + 60,
    jti: randomBytes(16).toString("base64url"),
    ...claims,
  })
    .setProtectedHeader({ alg: "ES256", kid: key.kid, typ: "ferry-identity+jwt", ...header })
    .sign(signWith);
}

function headers(...tokens: string[]): Header[] {
  return tokens.map((value) => create(HeaderSchema, { name: "x-ferry-identity", value }));
}

const ENV = {}; // no proxy from the test runner's environment
let server: JwksServer;
let keyA: RelayKey;
let tunnel: TunnelOrigin;

function newCheck(url = server.url, o: Partial<IdentityCheckOptions> = {}) {
  const check = createIdentityCheck({ network: { insecureSkipVerify: false }, env: ENV, minIntervalMs: 200, ...o });
  const on: TunnelOrigin = { relay: new URL(url), tenant: "acme" };
  return { check, verify: (h: Header[], target = "crm", t: TunnelOrigin = on) => check.check(h, target, t) };
}

beforeAll(async () => {
  server = await startJwksServer();
  keyA = await newKey();
  server.keys = [keyA];
  tunnel = { relay: new URL(server.url), tenant: "acme" };
});

afterAll(async () => {
  await server?.close();
});

describe("X-Ferry-Identity at the connector", () => {
  it("lets a valid identity through, and one that expired within the 30 s clock skew", async () => {
    const { check, verify } = newCheck();
    expect(await verify(headers(await identity(keyA)))).toBeUndefined();
    const now = Math.floor(Date.now() / 1000);
    expect(await verify(headers(await identity(keyA, { iat: now - 80, exp: now - 20 })))).toBeUndefined();
    check.close();
  });

  it("refuses a request without one: 403 identity_required", async () => {
    const { check, verify } = newCheck();
    expect(await verify([create(HeaderSchema, { name: "authorization", value: "Bearer x" })])).toMatchObject({ status: 403, code: "identity_required" });
    check.close();
  });

  it.each<[string, JWTPayload, Record<string, unknown>, RegExp]>([
    ["expired past the skew", { iat: Math.floor(Date.now() / 1000) - 120, exp: Math.floor(Date.now() / 1000) - 60 }, {}, /"exp"/],
    ["not valid yet", { nbf: Math.floor(Date.now() / 1000) + 120 }, {}, /"nbf"/],
    ["for another tenant's target (aud)", { aud: "crm.other" }, {}, /"aud"/],
    ["for another target (aud)", { aud: "erp.acme" }, {}, /"aud"/],
    ["with the right aud but another tenant claim", { tenant: "other" }, {}, /tenant "other"/],
    ["with the right aud but another target claim", { target: "erp" }, {}, /target "erp"/],
    ["without a tenant claim", { tenant: undefined }, {}, /"tenant"/],
    ["from another issuer", { iss: "https://login.example.com" }, {}, /"iss"/],
    ["without exp", { exp: undefined }, {}, /"exp"/],
    ["typed as a plain JWT", {}, { typ: "JWT" }, /"typ"/],
    ["without a kid", {}, { kid: undefined }, /kid/],
  ])("refuses an identity %s: 403 identity_invalid", async (_, claims, header, why) => {
    const { check, verify } = newCheck();
    const refusal = await verify(headers(await identity(keyA, claims, header)));
    expect(refusal).toMatchObject({ status: 403, code: "identity_invalid" });
    expect(refusal!.message).toMatch(why);
    check.close();
  });

  it("refuses alg none and HS256 (keyed with the relay's public key) without fetching any key", async () => {
    const { check, verify } = newCheck();
    const before = server.requests;
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: "ferry", aud: "crm.acme", tenant: "acme", target: "crm", sub: "x", iat: now, exp: now + 60 };
    const none = new UnsecuredJWT(claims).encode();
    const hs256 = await new SignJWT(claims)
      .setProtectedHeader({ alg: "HS256", kid: keyA.kid, typ: "ferry-identity+jwt" })
      .sign(new TextEncoder().encode(JSON.stringify(keyA.jwk)));
    for (const token of [none, hs256]) {
      const refusal = await verify(headers(token));
      expect(refusal).toMatchObject({ status: 403, code: "identity_invalid" });
      expect(refusal!.message).toMatch(/"alg"|JWS/);
    }
    expect(server.requests).toBe(before);
    check.close();
  });

  it("refuses a forgery: another key under the relay key's kid, or two identities in one request", async () => {
    const { check, verify } = newCheck();
    const forger = await newKey();
    const forged = await identity(keyA, {}, {}, forger.pair.privateKey);
    expect(await verify(headers(forged))).toMatchObject({ status: 403, code: "identity_invalid", message: expect.stringMatching(/signature/) });
    const valid = await identity(keyA);
    expect(await verify(headers(valid, valid))).toMatchObject({ status: 403, code: "identity_invalid", message: expect.stringMatching(/more than one/) });
    check.close();
  });

  it("fetches the keys again for an unknown kid, and takes a key the relay published since", async () => {
    const { check, verify } = newCheck();
    expect(await verify(headers(await identity(keyA)))).toBeUndefined();
    const fetched = server.requests;
    const keyB = await newKey();
    const early = await verify(headers(await identity(keyB)));
    expect(early).toMatchObject({ status: 403, code: "identity_invalid", message: expect.stringMatching(/kid/) });
    expect(server.requests).toBe(fetched + 1);
    server.keys = [keyA, keyB]; // a new node (or a rotation) publishes its key before it signs
    expect(await verify(headers(await identity(keyB)))).toBeUndefined();
    expect(server.requests).toBe(fetched + 2);
    // Known from now on: no more fetches for it.
    expect(await verify(headers(await identity(keyB)))).toBeUndefined();
    expect(server.requests).toBe(fetched + 2);
    server.keys = [keyA];
    check.close();
  });

  it("throttles fetches for unknown kids: many at once share one fetch, the next waits for its turn", async () => {
    const { check, verify } = newCheck(server.url, { minIntervalMs: 300 });
    expect(await verify(headers(await identity(keyA)))).toBeUndefined();
    const before = server.requests;
    const strangers = await Promise.all(Array.from({ length: 10 }, () => newKey()));
    const tokens = await Promise.all(Array.from({ length: 60 }, (_, i) => identity({ ...strangers[i % 10]!, kid: randomBytes(8).toString("base64url") })));
    const burst = await Promise.all(tokens.map((t) => verify(headers(t))));
    expect(burst.every((r) => r?.code === "identity_invalid")).toBe(true);
    expect(server.requests).toBe(before + 1);
    const second = await Promise.all(tokens.slice(0, 20).map((t) => verify(headers(t))));
    expect(second.every((r) => r?.code === "identity_invalid")).toBe(true);
    expect(server.requests).toBe(before + 2);
    // Each fetch waited for the interval since the one before (less a little: connecting takes its own time).
    const [t0, t1, t2] = server.times.slice(-3) as [number, number, number];
    expect(t1 - t0).toBeGreaterThanOrEqual(250);
    expect(t2 - t1).toBeGreaterThanOrEqual(250);
    check.close();
  });

  it("answers 503 identity_unavailable when the keys cannot be fetched, at once while it is down, and recovers", async () => {
    const { check, verify } = newCheck(server.url, { minIntervalMs: 300 });
    server.mode = "error";
    try {
      const token = await identity(keyA);
      const first = await verify(headers(token));
      expect(first).toMatchObject({ status: 503, code: "identity_unavailable" });
      expect(first!.detail).toMatch(/answered 500/);
      // The client is told the check could not be made, not where the connector's relay is.
      expect(first!.message).not.toMatch(/127\.0\.0\.1/);
      const tried = server.requests;
      expect(await verify(headers(token))).toMatchObject({ status: 503, code: "identity_unavailable" });
      expect(server.requests).toBe(tried);
      server.mode = "keys";
      // The next try comes once the interval since the failed one has passed.
      await eventually(async () => (await verify(headers(token))) === undefined, "the check to take the keys once they can be fetched");
      expect(server.requests).toBe(tried + 1);
    } finally {
      server.mode = "keys";
      check.close();
    }
  });

  it("answers 503 when nothing listens at the relay's address", async () => {
    const gone = await startJwksServer();
    await gone.close();
    const { check, verify } = newCheck(gone.url);
    const refusal = await verify(headers(await identity(keyA)));
    expect(refusal).toMatchObject({ status: 503, code: "identity_unavailable" });
    expect(refusal!.detail).toMatch(/ECONNREFUSED/);
    check.close();
  });

  it("answers 503 for a JWKS past 64 KiB, and for one that does not come within the timeout", async () => {
    const other = await startJwksServer();
    other.keys = [keyA];
    try {
      other.mode = "oversized";
      const big = newCheck(other.url);
      const tooLarge = await big.verify(headers(await identity(keyA)));
      expect(tooLarge).toMatchObject({ status: 503, code: "identity_unavailable" });
      expect(tooLarge!.detail).toMatch(/more than 65536 bytes/);
      big.check.close();

      other.mode = "hang";
      const slow = newCheck(other.url, { fetchTimeoutMs: 300 });
      const started = Date.now();
      const late = await slow.verify(headers(await identity(keyA)));
      expect(late).toMatchObject({ status: 503, code: "identity_unavailable" });
      expect(late!.detail).toMatch(/within 300 ms/);
      expect(Date.now() - started).toBeLessThan(3_000);
      slow.check.close();
    } finally {
      await other.close();
    }
  });

  it("keeps using the keys it has while the relay cannot be reached, up to maxStale", async () => {
    let clock = Date.now();
    const { check, verify } = newCheck(server.url, { now: () => clock, maxAgeMs: 60_000, maxStaleMs: 600_000 });
    const at = (t: number) => identity(keyA, { iat: Math.floor(t / 1000), exp: Math.floor(t / 1000) + 60 });
    expect(await verify(headers(await at(clock)))).toBeUndefined();
    server.mode = "error";
    try {
      const before = server.requests;
      clock += 120_000; // stale: a background fetch fails, the keys in hand still serve
      expect(await verify(headers(await at(clock)))).toBeUndefined();
      await eventually(() => server.requests === before + 1, "the background fetch");
      clock += 600_000; // past maxStale: no longer trusted
      expect(await verify(headers(await at(clock)))).toMatchObject({ status: 503, code: "identity_unavailable" });
    } finally {
      server.mode = "keys";
      check.close();
    }
  });

  it("answers 503 on a tunnel whose Welcome named no tenant", async () => {
    const { check } = newCheck();
    expect(await check.check(headers(await identity(keyA)), "crm", { relay: tunnel.relay, tenant: "" })).toMatchObject({ status: 503, code: "identity_unavailable" });
    check.close();
  });
});

describe("fetching the keys with the connector's relay network settings", () => {
  let pki: TestPki;
  let tlsServer: JwksServer;
  let proxy: Tinyproxy;

  beforeAll(async () => {
    pki = makeTestPki();
    tlsServer = await startJwksServer(pki);
    tlsServer.keys = [keyA];
    proxy = await startTinyproxy();
  });

  afterAll(async () => {
    await tlsServer?.close();
    await proxy?.close();
  });

  it("trusts --ca for an https:// relay, and refuses its certificate without it", async () => {
    const trusted = newCheck(tlsServer.url, { network: { insecureSkipVerify: false, ca: pki.ca } });
    expect(await trusted.verify(headers(await identity(keyA)))).toBeUndefined();
    trusted.check.close();

    const untrusted = newCheck(tlsServer.url);
    const refusal = await untrusted.verify(headers(await identity(keyA)));
    expect(refusal).toMatchObject({ status: 503, code: "identity_unavailable" });
    expect(refusal!.detail).toMatch(/certificate/);
    untrusted.check.close();

    const insecure = newCheck(tlsServer.url, { network: { insecureSkipVerify: true } });
    expect(await insecure.verify(headers(await identity(keyA)))).toBeUndefined();
    insecure.check.close();
  });

  it("goes through the connector's proxy (CONNECT), for https:// and http:// relays", async () => {
    const viaProxy = newCheck(tlsServer.url, { network: { insecureSkipVerify: false, ca: pki.ca, proxy: new URL(proxy.url) } });
    expect(await viaProxy.verify(headers(await identity(keyA)))).toBeUndefined();
    expect(proxy.connects()).toContain(new URL(tlsServer.url).host);
    viaProxy.check.close();

    const plain = newCheck(server.url, { network: { insecureSkipVerify: false }, env: { HTTP_PROXY: proxy.url } });
    expect(await plain.verify(headers(await identity(keyA)))).toBeUndefined();
    expect(proxy.connects()).toContain(new URL(server.url).host);
    plain.check.close();
  });
});
