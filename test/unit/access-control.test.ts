import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingHttpHeaders } from "node:http";
import type { DetailedPeerCertificate, PeerCertificate } from "node:tls";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { type AccessPolicy, AccessPolicySchema, type JwtRule } from "../../gen/ferry/access/v1/access_policy_pb.js";
import { FerryError, HTTP_STATUS } from "../../core/errors.js";
import type { AccessDecision, AccessRequest, ClientKeyCheck } from "../../services/access/access-control.js";
import { hashPassword } from "../../services/access/basic-auth.js";
import { type AccessControlDeps, createAccessControl } from "../../services/access/create-access-control.js";
import { validateAccessPolicy } from "../../services/access/policy-check.js";
import { createSourceBackoff } from "../../services/auth/source-backoff.js";
import { makePki } from "../helpers/pki.js";

// The whole decision of createAccessControl, with our own interfaces faked: the tenant's policy, the client key
// records and the token verifier (its real one is tested against a real OpenID provider elsewhere).

const pki = makePki("Access Control CA");
const CA = readFileSync(pki.root.cert, "utf8");
const alice = new X509Certificate(readFileSync(pki.issue({ cn: "alice", usage: "client" }).cert));
const mallory = new X509Certificate(readFileSync(makePki("Other CA").issue({ cn: "mallory", usage: "client" }).cert));
const certOf = (x: X509Certificate): PeerCertificate => {
  const c = { raw: x.raw } as Partial<DetailedPeerCertificate>;
  c.issuerCertificate = c as DetailedPeerCertificate;
  return c as PeerCertificate;
};
const PASSWORD = "open sesame";
const HASH = await hashPassword(PASSWORD);
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

const KEYS: Record<string, ClientKeyCheck> = {
  fcl_good: { ok: true, keyId: "key1", tenant: "acme", targets: [] },
  fcl_erp: { ok: true, keyId: "key2", tenant: "acme", targets: ["erp"] },
  fcl_other: { ok: true, keyId: "key3", tenant: "other", targets: [] },
  fcl_revoked: { ok: false, reason: "revoked" },
  fcl_expired: { ok: false, reason: "expired" },
};
const checkClientKey = (secret: string): ClientKeyCheck => KEYS[secret] ?? { ok: false, reason: secret.startsWith("fcl_") ? "unknown" : "malformed" };

async function verifyJwt(token: string, _rule: JwtRule): Promise<{ subject: string }> {
  const refuse = (code: string) => Promise.reject(new FerryError("unauthenticated", code, `token refused: ${code}`));
  if (token === "jwt.good") return { subject: "user-1" };
  if (token === "jwt.expired") return refuse("jwt_expired");
  if (token === "jwt.claims") return refuse("jwt_claims");
  // As services/access/jwt-verifier.ts has it: a valid token without the claims is permission_denied.
  if (token === "jwt.claims403") throw new FerryError("permission_denied", "jwt_claims", "the bearer token does not carry the claims this target requires");
  if (token === "jwt.down") throw new FerryError("unavailable", "jwks_unavailable", "the identity provider cannot be reached");
  if (token === "jwt.bug") throw new TypeError("a bug");
  return refuse("jwt_invalid");
}

const JWT = { issuer: "https://login.example.com/acme", audience: ["api://crm"] };
const policy = (rules: JsonValue[], more: Record<string, JsonValue> = {}): AccessPolicy =>
  validateAccessPolicy(fromJson(AccessPolicySchema, { rules, ...more }), { clientCertificates: true });

function control(policies: Record<string, AccessPolicy | undefined>, more: Partial<AccessControlDeps> = {}) {
  let now = Date.now();
  const clock = { now: () => now, advance: (ms: number) => (now += ms) };
  const backoff = createSourceBackoff({ authFailuresBeforeBackoff: 3, authBackoffMaxMs: 60_000 }, { now: clock.now });
  const access = createAccessControl({ policyOf: (t) => policies[t], checkClientKey, verifyJwt, backoff, now: clock.now, ...more });
  return { access, clock, backoff };
}

const request = (more: Partial<AccessRequest> = {}): AccessRequest => ({
  tenant: "acme",
  target: "crm",
  path: "/api/orders",
  clientAddress: "203.0.113.5",
  headers: {},
  tls: true,
  ...more,
});

/** One line a row can say what it wants in. */
function summary(d: AccessDecision): string {
  if (d.allowed) return `granted ${d.rule ?? "(public)"} ${d.method} ${d.subject} [${d.consumedHeaders.join(",")}]`;
  const www = d.wwwAuthenticate ? ` www=${d.wwwAuthenticate.join(" | ")}` : "";
  return `${HTTP_STATUS[d.error.kind]} ${d.reason} (${d.rule})${www}`;
}

const bearer = (token: string): IncomingHttpHeaders => ({ authorization: `Bearer ${token}` });

interface Row {
  name: string;
  policy?: AccessPolicy;
  req?: Partial<AccessRequest>;
  want: string;
}

const byKey = policy([{ name: "by key", targets: ["crm", "erp"], require: ["apiKey"] }]);
const keyOrToken = policy([{ targets: ["crm"], require: ["apiKey", "jwt"], jwt: JWT }]);
const tokenOnly = policy([{ targets: ["crm"], require: ["jwt"], jwt: JWT }]);
const byBasic = policy([{ targets: ["crm"], require: ["basic"], basicUsers: [{ name: "plc-7", passwordHash: HASH }] }]);
const byCert = policy([{ targets: ["crm"], require: ["mtls"] }], { clientCaPem: CA });
const INVALID = `www=Bearer realm="ferry", error="invalid_token"`;

const rows: Row[] = [
  { name: "a tenant without a policy", policy: undefined, want: "granted (public) none 203.0.113.5 []" },
  { name: "a policy without rules", policy: policy([]), want: "granted (public) none 203.0.113.5 []" },
  { name: "a target no rule names", policy: byKey, req: { target: "wiki" }, want: "granted (public) none 203.0.113.5 []" },
  { name: "a path no rule takes", policy: policy([{ targets: ["crm"], paths: ["/admin"], require: ["apiKey"] }]), req: { path: "/administrator" }, want: "granted (public) none 203.0.113.5 []" },
  { name: "a rule without credentials", policy: policy([{ targets: ["*"] }]), want: "granted rule 1 none 203.0.113.5 []" },

  // IP rules, before anything else.
  { name: "a denied address", policy: policy([{ targets: ["crm"], denyIps: ["203.0.113.0/24"] }]), want: "403 ip_denied (rule 1)" },
  { name: "an address outside the allowed ones", policy: policy([{ targets: ["crm"], allowIps: ["198.51.100.0/24"] }]), want: "403 ip_not_allowed (rule 1)" },
  { name: "an allowed address, v4-mapped", policy: policy([{ targets: ["crm"], allowIps: ["203.0.113.0/24"] }]), req: { clientAddress: "::ffff:203.0.113.5" }, want: "granted rule 1 none ::ffff:203.0.113.5 []" },
  { name: "an allowed IPv6 address", policy: policy([{ targets: ["crm"], allowIps: ["2001:db8::/32"] }]), req: { clientAddress: "2001:db8::7" }, want: "granted rule 1 none 2001:db8::7 []" },
  { name: "denied wins over allowed", policy: policy([{ targets: ["crm"], allowIps: ["203.0.113.0/24"], denyIps: ["203.0.113.5"] }]), want: "403 ip_denied (rule 1)" },
  { name: "no address at all, with an allow list", policy: policy([{ targets: ["crm"], allowIps: ["0.0.0.0/0"] }]), req: { clientAddress: "" }, want: "403 ip_not_allowed (rule 1)" },
  { name: "the IP rules before the credential", policy: policy([{ targets: ["crm"], denyIps: ["203.0.113.5"], require: ["apiKey"] }]), req: { headers: bearer("fcl_good") }, want: "403 ip_denied (rule 1)" },

  // Client keys.
  { name: "no key", policy: byKey, want: `401 credential_missing (by key) www=Bearer realm="ferry"` },
  { name: "a good key", policy: byKey, req: { headers: bearer("fcl_good") }, want: "granted by key apiKey key1 [authorization]" },
  { name: "a key, scheme in lower case", policy: byKey, req: { headers: { authorization: "bearer fcl_good" } }, want: "granted by key apiKey key1 [authorization]" },
  { name: "another tenant's key", policy: byKey, req: { headers: bearer("fcl_other") }, want: `401 api_key_invalid (by key) ${INVALID}` },
  { name: "an unknown key", policy: byKey, req: { headers: bearer("fcl_nope") }, want: `401 api_key_invalid (by key) ${INVALID}` },
  { name: "a connector key", policy: byKey, req: { headers: bearer("fck_0123456789abcdef_x") }, want: `401 api_key_invalid (by key) ${INVALID}` },
  { name: "a revoked key", policy: byKey, req: { headers: bearer("fcl_revoked") }, want: `401 api_key_revoked (by key) ${INVALID}` },
  { name: "an expired key", policy: byKey, req: { headers: bearer("fcl_expired") }, want: `401 api_key_expired (by key) ${INVALID}` },
  { name: "a key for other targets", policy: byKey, req: { headers: bearer("fcl_erp") }, want: "403 api_key_wrong_target (by key)" },
  { name: "a key for this target", policy: byKey, req: { target: "erp", headers: bearer("fcl_erp") }, want: "granted by key apiKey key2 [authorization]" },
  { name: "Basic where a key is wanted", policy: byKey, req: { headers: { authorization: basic("a", "b") } }, want: `401 credential_missing (by key) www=Bearer realm="ferry"` },
  {
    name: "a key in the rule's header",
    policy: policy([{ targets: ["crm"], require: ["apiKey"], apiKeyHeader: "X-Api-Key" }]),
    req: { headers: { "x-api-key": "fcl_good", authorization: "Bearer the-target's-own" } },
    want: "granted rule 1 apiKey key1 [x-api-key]",
  },
  {
    name: "a key as bearer where the rule names a header",
    policy: policy([{ targets: ["crm"], require: ["apiKey"], apiKeyHeader: "X-Api-Key" }]),
    req: { headers: bearer("fcl_good") },
    want: `401 credential_missing (rule 1) www=Bearer realm="ferry"`,
  },

  // Tokens.
  { name: "a good token", policy: tokenOnly, req: { headers: bearer("jwt.good") }, want: "granted rule 1 jwt user-1 [authorization]" },
  { name: "a token passed on (forward)", policy: policy([{ targets: ["crm"], require: ["jwt"], jwt: { ...JWT, forward: true } }]), req: { headers: bearer("jwt.good") }, want: "granted rule 1 jwt user-1 []" },
  { name: "an expired token", policy: tokenOnly, req: { headers: bearer("jwt.expired") }, want: `401 jwt_expired (rule 1) ${INVALID}` },
  { name: "a forged token", policy: tokenOnly, req: { headers: bearer("jwt.forged") }, want: `401 jwt_invalid (rule 1) ${INVALID}` },
  { name: "a token without the claims", policy: tokenOnly, req: { headers: bearer("jwt.claims") }, want: "403 jwt_claims (rule 1)" },
  { name: "a token without the claims (permission_denied)", policy: tokenOnly, req: { headers: bearer("jwt.claims403") }, want: "403 jwt_claims (rule 1)" },
  { name: "a client key where only tokens go", policy: tokenOnly, req: { headers: bearer("fcl_good") }, want: `401 jwt_invalid (rule 1) ${INVALID}` },
  { name: "an unreachable provider", policy: tokenOnly, req: { headers: bearer("jwt.down") }, want: "503 policy_unusable (rule 1)" },
  { name: "a verifier that breaks", policy: tokenOnly, req: { headers: bearer("jwt.bug") }, want: "500 policy_unusable (rule 1)" },
  { name: "key or token: a key", policy: keyOrToken, req: { headers: bearer("fcl_good") }, want: "granted rule 1 apiKey key1 [authorization]" },
  { name: "key or token: a token", policy: keyOrToken, req: { headers: bearer("jwt.good") }, want: "granted rule 1 jwt user-1 [authorization]" },
  { name: "key or token: a bad key is a bad key", policy: keyOrToken, req: { headers: bearer("fcl_nope") }, want: `401 api_key_invalid (rule 1) ${INVALID}` },
  { name: "key or token: neither", policy: keyOrToken, want: `401 credential_missing (rule 1) www=Bearer realm="ferry"` },

  // Basic.
  { name: "the right password", policy: byBasic, req: { headers: { authorization: basic("plc-7", PASSWORD) } }, want: "granted rule 1 basic plc-7 [authorization]" },
  { name: "a wrong password", policy: byBasic, req: { headers: { authorization: basic("plc-7", "guess") } }, want: `401 basic_invalid (rule 1) www=Basic realm="ferry"` },
  { name: "an unknown user", policy: byBasic, req: { headers: { authorization: basic("root", PASSWORD) } }, want: `401 basic_invalid (rule 1) www=Basic realm="ferry"` },
  { name: "a malformed Basic header", policy: byBasic, req: { headers: { authorization: "Basic ???" } }, want: `401 basic_invalid (rule 1) www=Basic realm="ferry"` },
  { name: "no password", policy: byBasic, want: `401 credential_missing (rule 1) www=Basic realm="ferry"` },
  {
    name: "one challenge per accepted scheme",
    policy: policy([{ targets: ["crm"], require: ["apiKey", "jwt", "basic", "mtls"], jwt: JWT, basicUsers: [{ name: "u", passwordHash: HASH }] }], { clientCaPem: CA }),
    want: `401 credential_missing (rule 1) www=Bearer realm="ferry" | Basic realm="ferry"`,
  },

  // Client certificates.
  { name: "a certificate of the tenant's CA", policy: byCert, req: { clientCertificate: certOf(alice) }, want: "granted rule 1 mtls alice []" },
  { name: "another CA's certificate", policy: byCert, req: { clientCertificate: certOf(mallory) }, want: "401 certificate_invalid (rule 1)" },
  { name: "no certificate", policy: byCert, want: "401 credential_missing (rule 1)" },
  { name: "an empty certificate (TLS without one)", policy: byCert, req: { clientCertificate: {} as PeerCertificate }, want: "401 credential_missing (rule 1)" },
  {
    name: "certificate first when the rule says so",
    policy: policy([{ targets: ["crm"], require: ["mtls", "apiKey"] }], { clientCaPem: CA }),
    req: { clientCertificate: certOf(alice), headers: bearer("fcl_good") },
    want: "granted rule 1 mtls alice []",
  },
  {
    name: "key first when the rule says so",
    policy: policy([{ targets: ["crm"], require: ["apiKey", "mtls"] }], { clientCaPem: CA }),
    req: { clientCertificate: certOf(alice), headers: bearer("fcl_good") },
    want: "granted rule 1 apiKey key1 [authorization]",
  },
  {
    name: "only the first credential carried is checked",
    policy: policy([{ targets: ["crm"], require: ["apiKey", "mtls"] }], { clientCaPem: CA }),
    req: { clientCertificate: certOf(alice), headers: bearer("fcl_nope") },
    want: `401 api_key_invalid (rule 1) ${INVALID}`,
  },
];

describe("the access decision", () => {
  it.each(rows)("$name: $want", async ({ policy: p, req, want }) => {
    const { access } = control({ acme: p });
    expect(access.applies("acme")).toBe((p?.rules.length ?? 0) > 0);
    expect(summary(await access.check(request(req)))).toBe(want);
  });

  it("answers at once, with no promise, when nothing needs I/O or scrypt: IP rules, a client key, a refusal", () => {
    const { access } = control({ acme: byKey });
    for (const headers of [bearer("fcl_good"), bearer("fcl_nope"), {}]) expect(access.check(request({ headers }))).not.toBeInstanceOf(Promise);
  });

  it("says in the message what to send, and never what the relay holds", async () => {
    const { access } = control({ acme: byKey });
    const missing = await access.check(request());
    expect(!missing.allowed && missing.error.message).toBe(`target "crm" needs a client key (Authorization: Bearer <key>)`);
    const other = await access.check(request({ headers: bearer("fcl_other") }));
    const unknown = await access.check(request({ headers: bearer("fcl_nope") }));
    expect(!other.allowed && other.error.message).toBe("the client key is not valid");
    expect(!unknown.allowed && unknown.error.message).toBe("the client key is not valid");
  });

  it("limits by address before the credential, with Retry-After and the RateLimit fields", async () => {
    const p = policy([{ name: "api", targets: ["crm"], require: ["apiKey"], rateLimit: { requests: 2, per: "10s", by: "ip" } }]);
    const { access, clock } = control({ acme: p });
    const from = (clientAddress: string, token = "fcl_good") => access.check(request({ clientAddress, headers: bearer(token) }));
    expect((await from("192.0.2.1")).allowed).toBe(true);
    expect((await from("192.0.2.1", "fcl_nope")).allowed).toBe(false); // a wrong key takes a token too: the bucket comes first
    const limited = await from("192.0.2.1");
    expect(summary(limited)).toBe("429 rate_limited (api)");
    expect(!limited.allowed && limited.headers).toEqual({ "ratelimit-policy": `"api";q=2;w=10`, ratelimit: `"api";r=0;t=5`, "retry-after": "5" });
    expect(!limited.allowed && limited.error.extra.retryAfterSeconds).toBe(5);
    expect((await from("192.0.2.2")).allowed).toBe(true); // another address, another bucket
    expect((await from("2001:db8:1:2::1")).allowed).toBe(true);
    expect((await from("2001:db8:1:2::1")).allowed).toBe(true);
    expect((await from("2001:db8:1:2::99")).allowed).toBe(false); // one IPv6 /64 is one source
    clock.advance(5_000);
    expect((await from("192.0.2.1")).allowed).toBe(true);
  });

  it("limits by rule: everyone the rule applies to shares one bucket", async () => {
    const { access } = control({ acme: policy([{ targets: ["crm"], rateLimit: { requests: 2, per: "1s", by: "rule" } }]) });
    const from = (clientAddress: string) => Promise.resolve(access.check(request({ clientAddress }))).then((d) => d.allowed);
    expect([await from("192.0.2.1"), await from("192.0.2.2"), await from("192.0.2.3")]).toEqual([true, true, false]);
  });

  it("limits by client after the credential: per key, wherever it comes from; a wrong key takes nothing", async () => {
    const p = policy([{ targets: ["crm", "erp"], require: ["apiKey"], rateLimit: { requests: 2, per: "1s" } }]);
    const { access } = control({ acme: p });
    const check = (clientAddress: string, token: string, target = "crm") => access.check(request({ clientAddress, target, headers: bearer(token) }));
    for (let i = 0; i < 2; i++) expect((await check("192.0.2.1", "fcl_nope")).allowed).toBe(false);
    expect((await check("192.0.2.1", "fcl_good")).allowed).toBe(true);
    expect((await check("192.0.2.2", "fcl_good")).allowed).toBe(true);
    expect(summary(await check("192.0.2.3", "fcl_good"))).toBe("429 rate_limited (rule 1)");
    expect((await check("192.0.2.1", "fcl_erp", "erp")).allowed).toBe(true); // another key, its own bucket
  });

  it("limits by client address when the rule needs no credential", async () => {
    const { access } = control({ acme: policy([{ targets: ["crm"], rateLimit: { requests: 1, per: "1s" } }]) });
    const from = (clientAddress: string) => Promise.resolve(access.check(request({ clientAddress }))).then((d) => d.allowed);
    expect([await from("192.0.2.1"), await from("192.0.2.1"), await from("192.0.2.2")]).toEqual([true, false, true]);
  });

  it("hands the node's share to the buckets", async () => {
    const { access } = control({ acme: policy([{ targets: ["crm"], rateLimit: { requests: 4, per: "1s", by: "rule" } }]) }, { share: () => 0.5 });
    const results = [];
    for (let i = 0; i < 4; i++) results.push((await access.check(request())).allowed);
    expect(results).toEqual([true, true, false, false]);
  });

  it("makes a source that keeps failing wait, even with a good key then, and lets it in after the wait", async () => {
    const { access, clock } = control({ acme: policy([{ targets: ["crm"], require: ["apiKey"] }, { targets: ["*"] }]) });
    for (let i = 0; i < 3; i++) expect(summary(await access.check(request({ headers: bearer("fcl_nope") })))).toMatch(/^401 api_key_invalid/);
    const waiting = await access.check(request({ headers: bearer("fcl_good") }));
    expect(summary(waiting)).toBe("429 too_many_failures (rule 1)");
    expect(!waiting.allowed && waiting.headers).toEqual({ "retry-after": "1" });
    expect((await access.check(request({ clientAddress: "203.0.113.6", headers: bearer("fcl_good") }))).allowed).toBe(true); // another source
    expect((await access.check(request({ target: "erp" }))).allowed).toBe(true); // a rule without credentials does not care
    clock.advance(1_000);
    expect(summary(await access.check(request({ headers: bearer("fcl_good") })))).toBe("granted rule 1 apiKey key1 [authorization]");
  });

  it.each([
    ["a missing credential", {}],
    ["a key for other targets", bearer("fcl_erp")],
    ["an expired token", bearer("jwt.expired")],
    ["a token without the claims", bearer("jwt.claims")],
  ])("does not count %s as a failure", async (_name, headers) => {
    const { access, backoff } = control({ acme: keyOrToken });
    for (let i = 0; i < 5; i++) await access.check(request({ headers }));
    expect(backoff.size).toBe(0);
  });

  it.each([
    ["a wrong key", bearer("fcl_nope")],
    ["a revoked key", bearer("fcl_revoked")],
    ["a forged token", bearer("jwt.forged")],
  ])("counts %s as a failure", async (_name, headers) => {
    const { access, backoff } = control({ acme: keyOrToken });
    await access.check(request({ headers }));
    expect(backoff.size).toBe(1);
  });

  it("counts a wrong password and a foreign certificate as failures", async () => {
    const { access, backoff } = control({ acme: byBasic, other: byCert });
    await access.check(request({ headers: { authorization: basic("plc-7", "guess") } }));
    await access.check(request({ tenant: "other", clientAddress: "203.0.113.9", clientCertificate: certOf(mallory) }));
    expect(backoff.size).toBe(2);
  });

  it("refuses a basic check with too_many_failures when the scrypt gate is full", async () => {
    const gate = { run: () => undefined, running: 2, waiting: 32 };
    const { access, backoff } = control({ acme: byBasic }, { scrypt: gate });
    const busy = await access.check(request({ headers: { authorization: basic("plc-7", PASSWORD) } }));
    expect(summary(busy)).toBe("429 too_many_failures (rule 1)");
    expect(backoff.size).toBe(0); // nothing was checked, so nothing counts against the source
  });

  it("sees a changed policy at once (a new object), and compiles each policy once", async () => {
    const policies: Record<string, AccessPolicy> = { acme: policy([{ targets: ["crm"], require: ["apiKey"] }]) };
    const { access } = control(policies);
    expect((await access.check(request())).allowed).toBe(false);
    policies.acme = policy([{ targets: ["erp"], require: ["apiKey"] }]);
    expect((await access.check(request())).allowed).toBe(true);
    expect(access.applies("acme")).toBe(true);
    policies.acme = policy([]);
    expect(access.applies("acme")).toBe(false);
  });

  it("refuses only the requests of a rule it cannot compile, and never throws", async () => {
    // Not validated: a stored policy this version cannot read.
    const broken = fromJson(AccessPolicySchema, { rules: [{ name: "office", targets: ["crm"], allowIps: ["not-an-address"] }, { targets: ["erp"], require: ["apiKey"] }] });
    const { access } = control({ acme: broken });
    const refused = await access.check(request());
    expect(summary(refused)).toBe("500 policy_unusable (office)");
    expect(!refused.allowed && refused.error.message).toBe(`the access policy of tenant "acme" cannot be applied to this request`);
    expect(summary(await access.check(request({ target: "erp", headers: bearer("fcl_good") })))).toBe("granted rule 2 apiKey key1 [authorization]");
  });

  it("refuses everyone of a tenant whose policy cannot be read", async () => {
    const access = createAccessControl({
      policyOf: () => {
        throw new Error("state unreadable");
      },
      checkClientKey,
      verifyJwt,
    });
    expect(access.applies("acme")).toBe(true);
    expect(summary(await access.check(request()))).toBe("500 policy_unusable ()");
  });

  it("refuses when the key check itself breaks", async () => {
    const access = createAccessControl({
      policyOf: () => byKey,
      checkClientKey: () => {
        throw new Error("catalog broken");
      },
      verifyJwt,
    });
    expect(summary(await access.check(request({ headers: bearer("fcl_good") })))).toBe("500 policy_unusable (by key)");
  });
});
