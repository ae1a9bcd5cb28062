import { createHmac, createPublicKey, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { JwtRuleSchema, type JwtRule } from "../../gen/ferry/access/v1/access_policy_pb.js";
import { FerryError } from "../../core/errors.js";
import { claimsMatch } from "../../services/access/jwt-claims.js";
import { idpEndpointProblem, idpUrlProblem, MAX_IDP_RESPONSE_BYTES } from "../../services/access/jwt-fetch.js";
import { createJwtVerifier, MAX_TOKEN_LENGTH, type JwtVerifier, type JwtVerifierOptions } from "../../services/access/jwt-verifier.js";
import { startOidcProvider, type TestOidcProvider } from "../helpers/oidc-provider.js";

const AUD = "api://crm";

/** A JwtRule as the policy file would say it (proto JSON). */
function rule(json: Record<string, JsonValue>): JwtRule {
  return fromJson(JwtRuleSchema, { audience: [AUD], ...json });
}

/** A tiny JWKS (or discovery) server on 127.0.0.1 port 0 that counts what it is asked: a real socket, not a mock. */
async function startCountingServer(answer: (path: string, res: ServerResponse) => void) {
  const hits: string[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    hits.push(req.url ?? "");
    answer(req.url ?? "", res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    hits,
    count: (path: string) => hits.filter((h) => h === path).length,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
const payloadOf = (token: string) => JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()) as Record<string, unknown>;

async function refusal(p: unknown): Promise<FerryError> {
  const err = await Promise.resolve(p).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FerryError);
  return err as FerryError;
}

describe("JWT verifier against a real OpenID provider", () => {
  let idp: TestOidcProvider;
  const verifiers: JwtVerifier[] = [];
  const verifier = (opts?: JwtVerifierOptions) => {
    const v = createJwtVerifier(opts);
    verifiers.push(v);
    return v;
  };
  const closers: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    idp = await startOidcProvider();
  });
  afterAll(async () => {
    await idp.close();
  });
  afterEach(async () => {
    for (const v of verifiers.splice(0)) v.close();
    for (const c of closers.splice(0)) await c();
  });

  it("takes a verified token again only for the same rule, and never past its exp and the skew", async () => {
    let clock = Date.now();
    const v = verifier({ now: () => clock });
    const token = await idp.tokenFor("ferry-test", { audience: AUD, expiresIn: 120 });
    const crm = rule({ issuer: idp.issuer });
    expect((await v.verify(token, crm)).subject).toBe("ferry-test");
    // Again: at once, no promise (behind a JWT rule this is every request of a client).
    const again = v.verify(token, crm);
    expect(again).not.toBeInstanceOf(Promise);
    expect((again as { subject: string }).subject).toBe("ferry-test");
    // Remembered for that rule object only: a rule for another audience checks the token and refuses it.
    const other = rule({ issuer: idp.issuer, audience: ["api://erp"] });
    expect((await refusal(v.verify(token, other))).message).toMatch(/audience/);
    clock += 120_000 + 31_000; // past exp and the 30 s skew
    expect((await refusal(v.verify(token, crm))).code).toBe("jwt_expired");
  });

  it("accepts a valid token, keys found by OIDC discovery (fetched once, then cached)", async () => {
    const v = verifier();
    const token = await idp.tokenFor("ferry-test", { audience: AUD, claims: { groups: ["crm-users"] } });
    const before = idp.requests.length;
    const ok = await v.verify(token, rule({ issuer: idp.issuer }));
    expect(ok.subject).toBe("ferry-test");
    expect(ok.claims).toMatchObject({ iss: idp.issuer, aud: AUD, groups: ["crm-users"], client_id: "ferry-test" });
    await v.verify(await idp.tokenFor("ferry-test", { audience: AUD }), rule({ issuer: idp.issuer }));
    expect(idp.requests.slice(before).filter((p) => p !== "/token")).toEqual(["/.well-known/openid-configuration", "/jwks"]);
  });

  it("takes the keys from an explicit jwksUrl without asking discovery", async () => {
    const jwks = await startCountingServer((_path, res) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(idp.jwks())));
    closers.push(jwks.close);
    const token = await idp.tokenFor("ferry-test", { audience: AUD });
    const before = idp.requests.length;
    const ok = await verifier().verify(token, rule({ issuer: idp.issuer, jwksUrl: `${jwks.url}/keys` }));
    expect(ok.subject).toBe("ferry-test");
    expect(jwks.hits).toEqual(["/keys"]);
    expect(idp.requests.slice(before)).toEqual([]);
  });

  it("refuses keys from a discovery document that names another issuer", async () => {
    const fake = await startCountingServer((_path, res) =>
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ issuer: idp.issuer, jwks_uri: idp.jwksUri })),
    );
    closers.push(fake.close);
    const token = await idp.tokenFor("ferry-test", { audience: AUD });
    const before = idp.requests.length;
    const err = await refusal(verifier().verify(token, rule({ issuer: fake.url })));
    expect([err.kind, err.code]).toEqual(["unavailable", "jwt_keys_unavailable"]);
    expect(err.message).toMatch(/keys are not available/);
    expect(fake.hits).toEqual(["/.well-known/openid-configuration"]);
    expect(idp.requests.slice(before)).toEqual([]); // its jwks_uri was never fetched
  });

  it("refuses an expired token as jwt_expired, allowing the rule's clock skew", async () => {
    const v = verifier();
    const expired = await idp.tokenFor("ferry-test", { audience: AUD, expiresIn: -120 });
    const err = await refusal(v.verify(expired, rule({ issuer: idp.issuer })));
    expect([err.kind, err.code, err.message]).toEqual(["unauthenticated", "jwt_expired", "the bearer token has expired"]);

    const justExpired = await idp.tokenFor("ferry-test", { audience: AUD, expiresIn: -10 });
    await expect(Promise.resolve(v.verify(justExpired, rule({ issuer: idp.issuer })))).resolves.toMatchObject({ subject: "ferry-test" }); // default skew 30 s
    expect((await refusal(v.verify(justExpired, rule({ issuer: idp.issuer, clockSkew: "0s" })))).code).toBe("jwt_expired");

    // The verifier's clock, not the process's: 10 minutes on, a 5-minute token is over.
    const later = verifier({ now: () => Date.now() + 10 * 60_000 });
    const fresh = await idp.tokenFor("ferry-test", { audience: AUD });
    expect((await refusal(later.verify(fresh, rule({ issuer: idp.issuer })))).code).toBe("jwt_expired");
  });

  it("refuses a token that is not valid yet (nbf), allowing the clock skew", async () => {
    const v = verifier();
    const err = await refusal(v.verify(await idp.tokenFor("ferry-test", { audience: AUD, notBefore: 120 }), rule({ issuer: idp.issuer })));
    expect([err.kind, err.code]).toEqual(["unauthenticated", "jwt_invalid"]);
    expect(err.message).toMatch(/not valid yet/);
    await expect(Promise.resolve(v.verify(await idp.tokenFor("ferry-test", { audience: AUD, notBefore: 10 }), rule({ issuer: idp.issuer })))).resolves.toBeDefined();
  });

  it("refuses a token for another audience; any one of the rule's audiences will do", async () => {
    const v = verifier();
    const other = await idp.tokenFor("ferry-test", { audience: "api://erp" });
    const err = await refusal(v.verify(other, rule({ issuer: idp.issuer })));
    expect([err.code, err.message]).toEqual(["jwt_invalid", "the bearer token is not accepted: its audience is not this target"]);
    await expect(Promise.resolve(v.verify(other, rule({ issuer: idp.issuer, audience: ["api://crm", "api://erp"] })))).resolves.toBeDefined();
  });

  it("refuses a token from another issuer, even one signed by keys the rule trusts", async () => {
    const token = await idp.tokenFor("ferry-test", { audience: AUD });
    // Signature good (the keys are the provider's), iss wrong.
    const err = await refusal(verifier().verify(token, rule({ issuer: "https://login.example.com/acme", jwksUrl: idp.jwksUri })));
    expect([err.code, err.message]).toEqual(["jwt_invalid", "the bearer token is not accepted: its issuer is not the one this target trusts"]);

    // A second real provider: its key is not among the first one's.
    const other = await startOidcProvider();
    closers.push(other.close);
    const foreign = await other.tokenFor("ferry-test", { audience: AUD });
    expect((await refusal(verifier().verify(foreign, rule({ issuer: idp.issuer })))).code).toBe("jwt_invalid");
  });

  it('refuses alg "none", before any key is fetched, whatever the rule lists', async () => {
    const real = await idp.tokenFor("ferry-test", { audience: AUD });
    const [, payload] = real.split(".");
    const unsigned = `${b64({ alg: "none", typ: "JWT" })}.${payload}.`;
    const before = idp.requests.length;
    const v = verifier();
    const err = await refusal(v.verify(unsigned, rule({ issuer: idp.issuer })));
    expect([err.kind, err.code]).toEqual(["unauthenticated", "jwt_invalid"]);
    expect(err.message).toMatch(/algorithm is not accepted/);
    expect((await refusal(v.verify(unsigned, rule({ issuer: idp.issuer, algorithms: ["none"] })))).message).toMatch(/no usable algorithm/);
    expect((await refusal(v.verify(unsigned, rule({ issuer: idp.issuer, algorithms: ["none", "RS256"] })))).code).toBe("jwt_invalid");
    expect(idp.requests.slice(before)).toEqual([]);
  });

  it("refuses HS256 signed with the provider's public key as the secret (the key confusion attack)", async () => {
    const real = await idp.tokenFor("ferry-test", { audience: AUD });
    const jwk = idp.jwks().keys[0]!;
    const pem = createPublicKey({ key: jwk as never, format: "jwk" }).export({ type: "spki", format: "pem" });
    const signingInput = `${b64({ alg: "HS256", typ: "JWT", kid: jwk.kid })}.${real.split(".")[1]}`;
    const forged = `${signingInput}.${createHmac("sha256", pem).update(signingInput).digest("base64url")}`;
    const v = verifier();
    await v.verify(real, rule({ issuer: idp.issuer })); // the keys are cached: only the alg check stands in the way
    for (const algorithms of [[], ["HS256", "RS256"]]) {
      const err = await refusal(v.verify(forged, rule({ issuer: idp.issuer, algorithms })));
      expect([err.code, err.message]).toEqual(["jwt_invalid", "the bearer token is not accepted: its signing algorithm is not accepted"]);
    }
  });

  it("accepts only the rule's algorithms", async () => {
    const token = await idp.tokenFor("ferry-test", { audience: AUD }); // RS256
    const v = verifier();
    expect((await refusal(v.verify(token, rule({ issuer: idp.issuer, algorithms: ["ES256"] })))).message).toMatch(/algorithm is not accepted/);
    const ec = await startOidcProvider({ alg: "ES256" });
    closers.push(ec.close);
    const ok = await v.verify(await ec.tokenFor("ferry-test", { audience: AUD }), rule({ issuer: ec.issuer, algorithms: ["ES256"] }));
    expect(ok.subject).toBe("ferry-test");
  });

  it("finds a rotated key by refetching on the unknown kid; old tokens stay valid while the old key is published", async () => {
    const rotating = await startOidcProvider();
    closers.push(rotating.close);
    const v = verifier({ refetchCooldownMs: 0 });
    const old = await rotating.tokenFor("ferry-test", { audience: AUD });
    await v.verify(old, rule({ issuer: rotating.issuer }));
    const oldKid = rotating.currentKid();
    await rotating.rotateKeys();
    expect(rotating.currentKid()).not.toBe(oldKid);
    const fresh = await rotating.tokenFor("ferry-test", { audience: AUD });
    expect(JSON.parse(Buffer.from(fresh.split(".")[0]!, "base64url").toString()).kid).toBe(rotating.currentKid());
    await expect(Promise.resolve(v.verify(fresh, rule({ issuer: rotating.issuer })))).resolves.toMatchObject({ subject: "ferry-test" });
    await expect(Promise.resolve(v.verify(old, rule({ issuer: rotating.issuer })))).resolves.toBeDefined();
    expect(rotating.requests.filter((p) => p === "/jwks")).toHaveLength(2);

    // With the default cooldown the same rotation is only seen once the cooldown has passed.
    const slow = verifier();
    await slow.verify(fresh, rule({ issuer: rotating.issuer }));
    await rotating.rotateKeys();
    const newest = await rotating.tokenFor("ferry-test", { audience: AUD });
    expect((await refusal(slow.verify(newest, rule({ issuer: rotating.issuer })))).message).toMatch(/not signed by a key of the identity provider/);
  });

  it("throttles refetches: many tokens with unknown kids cost one fetch per cooldown", async () => {
    const jwks = await startCountingServer((_path, res) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(idp.jwks())));
    closers.push(jwks.close);
    const r = rule({ issuer: idp.issuer, jwksUrl: `${jwks.url}/jwks` });
    const real = await idp.tokenFor("ferry-test", { audience: AUD });
    const [, payload, signature] = real.split(".");
    const unknownKid = () => `${b64({ alg: "RS256", typ: "at+jwt", kid: randomUUID() })}.${payload}.${signature}`;

    const v = verifier();
    // 50 at once on a cold cache: one fetch between them.
    const results = await Promise.allSettled(Array.from({ length: 50 }, () => v.verify(unknownKid(), r)));
    expect(results.every((x) => x.status === "rejected" && (x.reason as FerryError).code === "jwt_invalid")).toBe(true);
    for (let i = 0; i < 50; i++) await refusal(v.verify(unknownKid(), r));
    await v.verify(real, r);
    expect(jwks.count("/jwks")).toBe(1);

    // Without a cooldown every unknown kid would fetch again: what the throttle saves.
    const eager = verifier({ refetchCooldownMs: 0 });
    await eager.verify(real, r);
    for (let i = 0; i < 5; i++) await refusal(eager.verify(unknownKid(), r));
    expect(jwks.count("/jwks")).toBe(1 + 1 + 5);
  });

  it("checks required claims: equal, contained in an array claim, any one of a list, nested by a dotted name", async () => {
    const v = verifier();
    const token = await idp.tokenFor("ferry-test", {
      audience: AUD,
      claims: { groups: ["crm-users", "staff"], tier: "gold", level: 3, mfa: true, realm_access: { roles: ["crm-admin"] } },
    });
    const check = (claims: Record<string, JsonValue>) => v.verify(token, rule({ issuer: idp.issuer, claims }));
    await expect(check({ tier: "gold", level: 3, mfa: true })).resolves.toBeDefined();
    await expect(check({ groups: "crm-users" })).resolves.toBeDefined();
    await expect(check({ tier: ["silver", "gold"] })).resolves.toBeDefined();
    await expect(check({ groups: ["admins", "staff"] })).resolves.toBeDefined();
    await expect(check({ "realm_access.roles": "crm-admin" })).resolves.toBeDefined();
    const unmet: Record<string, JsonValue>[] = [{ groups: "admins" }, { tier: "silver" }, { tier: ["silver", "bronze"] }, { level: "3" }, { mfa: false }, { missing: "x" }, { tier: "gold", groups: "admins" }];
    for (const claims of unmet) {
      const err = await refusal(check(claims));
      expect([err.kind, err.code]).toEqual(["permission_denied", "jwt_claims"]);
    }
  });

  it("refuses when the keys cannot be fetched, and backs off instead of asking again on every token", async () => {
    const failing = await startCountingServer((_path, res) => res.writeHead(500).end());
    closers.push(failing.close);
    const token = await idp.tokenFor("ferry-test", { audience: AUD });
    const lines: string[] = [];
    const log = pino({ level: "warn" }, new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) }));
    const t0 = Date.now();
    const v = verifier({ log, now: () => t0 }); // a clock that stands still: the back-off cannot run out meanwhile
    const r = rule({ issuer: idp.issuer, jwksUrl: `${failing.url}/jwks` });
    for (let i = 0; i < 5; i++) {
      const err = await refusal(v.verify(token, r));
      expect([err.kind, err.code]).toEqual(["unavailable", "jwt_keys_unavailable"]);
      expect(err.message).toMatch(/keys are not available/);
    }
    expect(failing.count("/jwks")).toBe(1);
    expect(lines.join("")).toMatch(/identity provider keys unavailable/);
    expect(lines.join("")).not.toContain(token.split(".")[1]!);

    // Nobody listening at all.
    const gone = await startCountingServer(() => {});
    await gone.close();
    expect((await refusal(verifier().verify(token, rule({ issuer: idp.issuer, jwksUrl: `${gone.url}/jwks` })))).message).toMatch(/keys are not available/);
  });

  it("gives up on a provider that does not answer within fetchTimeoutMs", async () => {
    const silent = await startCountingServer(() => {}); // never answers
    closers.push(silent.close);
    const token = await idp.tokenFor("ferry-test", { audience: AUD });
    const started = Date.now();
    const err = await refusal(verifier({ fetchTimeoutMs: 200 }).verify(token, rule({ issuer: idp.issuer, jwksUrl: `${silent.url}/jwks` })));
    expect(err.code).toBe("jwt_keys_unavailable");
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("reads at most MAX_IDP_RESPONSE_BYTES of a JWKS", async () => {
    const huge = JSON.stringify({ keys: [...idp.jwks().keys, { kty: "oct", k: "x".repeat(MAX_IDP_RESPONSE_BYTES) }] });
    const big = await startCountingServer((_path, res) => {
      res.writeHead(200, { "content-type": "application/json" }); // chunked: no Content-Length to refuse it by
      res.write(huge.slice(0, 1000));
      res.end(huge.slice(1000));
    });
    closers.push(big.close);
    const token = await idp.tokenFor("ferry-test", { audience: AUD });
    expect((await refusal(verifier().verify(token, rule({ issuer: idp.issuer, jwksUrl: `${big.url}/jwks` })))).message).toMatch(/keys are not available/);
  });

  it("refuses a token over 16 KiB without parsing it or fetching anything", async () => {
    const before = idp.requests.length;
    const long = `${"a".repeat(MAX_TOKEN_LENGTH)}.b.c`;
    const err = await refusal(verifier().verify(long, rule({ issuer: idp.issuer })));
    expect([err.code, err.message]).toEqual(["jwt_invalid", "the bearer token is not accepted: it is too long"]);
    expect(idp.requests.slice(before)).toEqual([]);
  });

  it("refuses malformed tokens with a message that repeats nothing of them", async () => {
    const v = verifier();
    const real = await idp.tokenFor("ferry-test", { audience: AUD, claims: { email: "alice@example.com" } });
    const [header, payload] = real.split(".");
    for (const bad of ["", "abc", "a.b.c", `${header}.${payload}`, `${header}.${payload}.AAAA`, `${header}.!!.${real.split(".")[2]}`]) {
      const err = await refusal(v.verify(bad, rule({ issuer: idp.issuer })));
      expect([err.kind, err.code]).toEqual(["unauthenticated", "jwt_invalid"]);
      expect(err.message).not.toMatch(/alice|ferry-test/);
      expect(err.cause).toBeUndefined();
    }
    const signatureBroken = `${header}.${b64({ ...payloadOf(real), sub: "mallory" })}.${real.split(".")[2]}`;
    expect((await refusal(v.verify(signatureBroken, rule({ issuer: idp.issuer })))).message).toMatch(/signature does not verify/);
  });

  it("keeps at most maxIssuers key sets, the least recently used going first", async () => {
    const jwks = await startCountingServer((_path, res) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(idp.jwks())));
    closers.push(jwks.close);
    const token = await idp.tokenFor("ferry-test", { audience: AUD });
    const v = verifier({ maxIssuers: 2 });
    for (const path of ["/a", "/b", "/a", "/c", "/a", "/b"]) await v.verify(token, rule({ issuer: idp.issuer, jwksUrl: `${jwks.url}${path}` }));
    // a, b fetched; a kept by its use; c evicts b; a still there; b again evicts c.
    expect(jwks.hits).toEqual(["/a", "/b", "/c", "/b"]);
  });

  it("refuses key URLs that are neither https nor loopback http, without fetching", async () => {
    const token = await idp.tokenFor("ferry-test", { audience: AUD });
    const lines: string[] = [];
    const log = pino({ level: "warn" }, new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) }));
    const err = await refusal(verifier({ log }).verify(token, rule({ issuer: idp.issuer, jwksUrl: "http://keys.example.com/jwks" })));
    expect(err.message).toMatch(/keys are not available/);
    expect(lines.join("")).toMatch(/must be https \(http only on a loopback address\)/);
  });

  it("refuses after close", async () => {
    const v = createJwtVerifier();
    v.close();
    expect((await refusal(v.verify(await idp.tokenFor("ferry-test", { audience: AUD }), rule({ issuer: idp.issuer })))).code).toBe("jwt_keys_unavailable");
  });
});

describe("claimsMatch (no sockets)", () => {
  const v = (json: JsonValue) => fromJson(ValueSchema, json);
  const claims = { groups: ["a", "b"], tier: "gold", n: 3, t: true, nested: { roles: ["r"] }, "https://example.com/roles": ["x"], empty: [] };
  it.each<[string, Record<string, JsonValue>, boolean]>([
    ["nothing required", {}, true],
    ["string equal", { tier: "gold" }, true],
    ["string differs", { tier: "Gold" }, false],
    ["number equal", { n: 3 }, true],
    ["number is not its string", { n: "3" }, false],
    ["bool equal", { t: true }, true],
    ["bool differs", { t: false }, false],
    ["array contains", { groups: "b" }, true],
    ["array lacks", { groups: "c" }, false],
    ["empty array", { empty: "a" }, false],
    ["any of a list, scalar claim", { tier: ["silver", "gold"] }, true],
    ["any of a list, array claim", { groups: ["c", "a"] }, true],
    ["none of a list", { groups: ["c", "d"] }, false],
    ["empty list", { groups: [] }, false],
    ["missing claim", { absent: "x" }, false],
    ["null never matches", { tier: null }, false],
    ["an object never matches", { nested: { roles: ["r"] } }, false],
    ["dotted path into an object", { "nested.roles": "r" }, true],
    ["a claim named with dots wins", { "https://example.com/roles": "x" }, true],
    ["no prototype lookups", { constructor: "Object" }, false],
    ["no prototype lookups by path", { "__proto__.constructor": "x" }, false],
    ["all must hold", { tier: "gold", groups: "c" }, false],
  ])("%s", (_name, required, expected) => {
    expect(claimsMatch(claims, Object.fromEntries(Object.entries(required).map(([k, j]) => [k, v(j)])))).toBe(expected);
  });
});

describe("idpUrlProblem (no sockets)", () => {
  it.each<[string, boolean]>([
    ["https://login.example.com/acme", true],
    ["http://127.0.0.1:8080/x", true],
    ["http://localhost:8080/x", true],
    ["http://[::1]:8080/x", true],
    ["http://login.example.com/acme", false],
    ["http://10.0.0.1/jwks", false],
    ["ftp://login.example.com", false],
    ["https://user:pw@login.example.com", false],
    ["https://login.example.com/#x", false],
    ["not a url", false],
  ])("%s", (url, ok) => {
    expect(idpUrlProblem(url) === undefined).toBe(ok);
  });
});

describe("idpEndpointProblem: what a discovery document may name (no sockets)", () => {
  const PUBLIC = "https://login.example.com/acme";
  const LOCAL = "http://127.0.0.1:9000/realm";
  it.each<[string, string, boolean]>([
    ["https://login.example.com/acme/token", PUBLIC, true],
    ["https://oauth2.googleapis.com/token", PUBLIC, true],
    ["http://127.0.0.1:9000/realm/token", LOCAL, true],
    ["https://127.0.0.1:9000/realm/token", LOCAL, true],
    ["http://127.0.0.1:8500/v1/kv", PUBLIC, false],
    ["http://localhost:2375/containers", PUBLIC, false],
    ["https://127.0.0.1:8443/admin", PUBLIC, false],
    ["https://10.0.0.5/token", PUBLIC, false],
    ["https://172.20.1.1/token", PUBLIC, false],
    ["https://192.168.1.1/token", PUBLIC, false],
    ["https://169.254.169.254/latest/meta-data", PUBLIC, false],
    ["https://100.64.0.1/token", PUBLIC, false],
    ["https://[fd00::1]/token", PUBLIC, false],
    ["https://[fe80::1]/token", PUBLIC, false],
    ["https://[::ffff:10.0.0.5]/token", PUBLIC, false],
    ["https://172.32.0.1/token", PUBLIC, true],
    ["https://[::127.0.0.1]/token", PUBLIC, false],
    ["https://[::ffff:0:7f00:1]/token", PUBLIC, false],
    ["https://[0:0:0:0:0:ffff:7f00:1]/token", PUBLIC, false],
    ["https://[fec0::1]/token", PUBLIC, false],
    ["https://[64:ff9b::a9fe:a9fe]/token", PUBLIC, false],
    ["https://198.18.0.1/token", PUBLIC, false],
    ["https://2130706433/token", PUBLIC, false],
    ["https://0x7f.1/token", PUBLIC, false],
    ["https://localhost./token", PUBLIC, false],
    ["https://idp.localhost/token", PUBLIC, false],
    ["https://[2001:db8::1]/token", PUBLIC, true],
    ["http://login.example.com/acme/token", PUBLIC, false],
  ])("%s (issuer %s)", (url, issuer, ok) => {
    expect(idpEndpointProblem(url, issuer) === undefined).toBe(ok);
  });
});
