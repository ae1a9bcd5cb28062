import { readFileSync } from "node:fs";
import { fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { AccessPolicySchema } from "../../gen/ferry/access/v1/access_policy_pb.js";
import { FerryError } from "../../core/errors.js";
import { validateAccessPolicy } from "../../services/access/policy-check.js";
import { makePki } from "../helpers/pki.js";

const pki = makePki("Access Policy Check CA");
const caPem = readFileSync(pki.root.cert, "utf8");
const leafPem = readFileSync(pki.issue({ cn: "alice", usage: "client" }).cert, "utf8");
const b64 = (n: number) => Buffer.alloc(n, 7).toString("base64url");
const HASH = `scrypt$32768$8$1$${b64(16)}$${b64(32)}`;
const jwt = { issuer: "https://login.example.com/acme", audience: ["api://crm"] };
const rule = (r: Record<string, JsonValue>) => ({ rules: [{ targets: ["crm"], ...r }] });

interface Row {
  name: string;
  policy: JsonValue;
  tls?: boolean;
  /** A fragment of the error message. */
  want: string;
}

const rows: Row[] = [
  { name: "too many rules", policy: { rules: Array.from({ length: 101 }, () => ({ targets: ["*"] })) }, want: "rules: at most 100 rules (this policy has 101)" },
  { name: "a rule without targets", policy: { rules: [{ require: ["apiKey"] }] }, want: `rule 1: targets: at least one target name (or "*" for every target) is needed` },
  { name: "a named rule, named in the message", policy: { rules: [{ name: "crm api", targets: [] }] }, want: `rule "crm api": targets: at least one` },
  { name: "a target that is not a DNS label", policy: rule({ targets: ["CRM"] }), want: `rule 1: targets: "CRM" is neither a target name (a DNS label: a-z, 0-9 and '-') nor "*"` },
  { name: "a second rule, by its position", policy: { rules: [{ targets: ["*"] }, { targets: ["a_b"] }] }, want: `rule 2: targets: "a_b" is neither` },
  { name: "too many targets", policy: rule({ targets: Array.from({ length: 257 }, (_, i) => `t${i}`) }), want: "rule 1: targets: at most 256 entries" },
  { name: "a path without /", policy: rule({ paths: ["api/"] }), want: `rule 1: paths: "api/" must start with "/"` },
  { name: "a path with ..", policy: rule({ paths: ["/api/../admin"] }), want: `rule 1: paths: "/api/../admin" may not contain ".." or "." segments` },
  { name: "a path with a . segment", policy: rule({ paths: ["/api/./x"] }), want: `may not contain ".." or "." segments` },
  { name: "a path with a query", policy: rule({ paths: ["/api?x=1"] }), want: `rule 1: paths: "/api?x=1" may not contain "?"` },
  { name: "a CIDR with a bad prefix", policy: rule({ allowIps: ["10.0.0.0/33"] }), want: `rule 1: allowIps: "10.0.0.0/33" has a prefix length that is not 0-32` },
  { name: "an IPv6 CIDR with a bad prefix", policy: rule({ denyIps: ["2001:db8::/129"] }), want: `rule 1: denyIps: "2001:db8::/129" has a prefix length that is not 0-128` },
  { name: "a CIDR that is no address", policy: rule({ denyIps: ["10.0.0"] }), want: `rule 1: denyIps: "10.0.0" is not an IPv4 or IPv6 address or CIDR block` },
  { name: "a host name for an address", policy: rule({ allowIps: ["office.example.com"] }), want: `"office.example.com" is not an IPv4 or IPv6 address` },
  { name: "an address with a zone", policy: rule({ allowIps: ["fe80::1%eth0"] }), want: `"fe80::1%eth0" is not an IPv4 or IPv6 address` },
  { name: "an unknown credential", policy: rule({ require: ["oauth"] }), want: `rule 1: require: "oauth" is not a credential: use apiKey, jwt, mtls, basic or login` },
  { name: "jwt required without a jwt rule", policy: rule({ require: ["jwt"] }), want: "rule 1: require names jwt, so jwt (issuer and audience at least) is needed" },
  { name: "a jwt rule that is not required", policy: rule({ jwt }), want: "rule 1: jwt is set but require does not name jwt" },
  { name: "jwt without an issuer", policy: rule({ require: ["jwt"], jwt: { audience: ["a"] } }), want: "rule 1: jwt.issuer is needed" },
  { name: "jwt without an audience", policy: rule({ require: ["jwt"], jwt: { issuer: jwt.issuer } }), want: "rule 1: jwt.audience: at least one audience is needed" },
  {
    name: "an http issuer",
    policy: rule({ require: ["jwt"], jwt: { ...jwt, issuer: "http://login.example.com/acme" } }),
    want: `rule 1: jwt.issuer "http://login.example.com/acme" must be https (http only on a loopback address)`,
  },
  {
    name: "an http jwksUrl",
    policy: rule({ require: ["jwt"], jwt: { ...jwt, jwksUrl: "http://keys.example.com/jwks" } }),
    want: `rule 1: jwt.jwksUrl "http://keys.example.com/jwks" must be https`,
  },
  { name: "an issuer with a password", policy: rule({ require: ["jwt"], jwt: { ...jwt, issuer: "https://u:p@login.example.com" } }), want: `rule 1: jwt.issuer "https://u:p@login.example.com" must not carry credentials` },
  { name: "an issuer that is no URL", policy: rule({ require: ["jwt"], jwt: { ...jwt, issuer: "login" } }), want: `rule 1: jwt.issuer "login" is not a URL` },
  { name: "alg none", policy: rule({ require: ["jwt"], jwt: { ...jwt, algorithms: ["none"] } }), want: `rule 1: jwt.algorithms: "none" is never accepted: only asymmetric ones` },
  { name: "alg HS256", policy: rule({ require: ["jwt"], jwt: { ...jwt, algorithms: ["RS256", "HS256"] } }), want: `jwt.algorithms: "HS256" is never accepted` },
  { name: "an unknown alg", policy: rule({ require: ["jwt"], jwt: { ...jwt, algorithms: ["XY1"] } }), want: `jwt.algorithms: "XY1" is not an algorithm Ferry accepts` },
  { name: "a clock skew over 5 minutes", policy: rule({ require: ["jwt"], jwt: { ...jwt, clockSkew: "301s" } }), want: "rule 1: jwt.clockSkew must be between 0s and 5m" },
  {
    name: "a claim that is an object",
    policy: rule({ require: ["jwt"], jwt: { ...jwt, claims: { groups: { a: 1 } } } }),
    want: "rule 1: jwt.claims.groups must be a string, number or boolean, or a list",
  },
  { name: "no requests", policy: rule({ rateLimit: { requests: 0, per: "1s" } }), want: "rule 1: rateLimit.requests must be at least 1" },
  { name: "no period", policy: rule({ rateLimit: { requests: 5 } }), want: "rule 1: rateLimit.per must be between 1ms and 1d" },
  { name: "a period over a day", policy: rule({ rateLimit: { requests: 5, per: "86401s" } }), want: "rule 1: rateLimit.per must be between 1ms and 1d" },
  { name: "a period under 1 ms", policy: rule({ rateLimit: { requests: 5, per: "0.0001s" } }), want: "rule 1: rateLimit.per must be between 1ms and 1d" },
  { name: "an unknown key-by", policy: rule({ rateLimit: { requests: 5, per: "1s", by: "user" } }), want: `rule 1: rateLimit.by "user" is not one of client, ip, rule` },
  { name: "basic without users", policy: rule({ require: ["basic"] }), want: "rule 1: require names basic, so basicUsers needs at least one user" },
  { name: "users without basic", policy: rule({ basicUsers: [{ name: "u", passwordHash: HASH }] }), want: "rule 1: basicUsers is set but require does not name basic" },
  {
    name: "a malformed password hash",
    policy: rule({ require: ["basic"], basicUsers: [{ name: "plc-7", passwordHash: "hunter2" }] }),
    want: `rule 1: basicUsers[0] ("plc-7").passwordHash is not a password hash of the form scrypt$N$r$p$<salt base64url>$<hash base64url>`,
  },
  {
    name: "a hash with a weak N",
    policy: rule({ require: ["basic"], basicUsers: [{ name: "u", passwordHash: `scrypt$1024$8$1$${b64(16)}$${b64(32)}` }] }),
    want: "passwordHash has N=1024: N must be a power of two, at least 2^14",
  },
  {
    name: "a hash with a short salt",
    policy: rule({ require: ["basic"], basicUsers: [{ name: "u", passwordHash: `scrypt$32768$8$1$${b64(8)}$${b64(32)}` }] }),
    want: "passwordHash has a salt or hash that is not 16-64 bytes of base64url",
  },
  {
    name: "a user name with a colon",
    policy: rule({ require: ["basic"], basicUsers: [{ name: "a:b", passwordHash: HASH }] }),
    want: `rule 1: basicUsers[0].name "a:b" must be 1-256 characters, without ":"`,
  },
  {
    name: "too many users",
    policy: rule({ require: ["basic"], basicUsers: Array.from({ length: 1001 }, (_, i) => ({ name: `u${i}`, passwordHash: HASH })) }),
    want: "rule 1: basicUsers: at most 1000 users",
  },
  { name: "mtls without a CA", policy: rule({ require: ["mtls"] }), tls: true, want: "rule 1: require names mtls, so clientCaPem" },
  { name: "a CA that does not parse", policy: { ...rule({ require: ["mtls"] }), clientCaPem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----" }, tls: true, want: "clientCaPem certificate 1 does not parse" },
  { name: "a CA file without a certificate", policy: { clientCaPem: "hello" }, want: "clientCaPem has no PEM certificate" },
  { name: "a leaf for a CA", policy: { ...rule({ require: ["mtls"] }), clientCaPem: leafPem }, tls: true, want: "clientCaPem certificate 1 (alice) is not a CA certificate" },
  { name: "a CA over 64 KiB", policy: { clientCaPem: caPem.repeat(Math.ceil(65_537 / caPem.length)) }, want: "clientCaPem: at most 64 KiB of PEM" },
  {
    name: "mtls alone without a TLS listener",
    policy: { ...rule({ require: ["mtls"] }), clientCaPem: caPem },
    tls: false,
    want: "rule 1: this relay does not ask clients for certificates, so a rule that accepts only mtls can never match",
  },
  { name: "an api key header that is not a header", policy: rule({ require: ["apiKey"], apiKeyHeader: "X Api" }), want: `rule 1: apiKeyHeader "X Api" is not a header name` },
  { name: "an api key in Host", policy: rule({ require: ["apiKey"], apiKeyHeader: "Host" }), want: `rule 1: apiKeyHeader "Host" cannot carry a client key` },
  { name: "two rules of one name", policy: { rules: [{ name: "a", targets: ["*"] }, { name: "a", targets: ["*"] }] }, want: `rule 2: name "a" is already the name of rule 1` },
];

describe("the access policy check", () => {
  it.each(rows)("$name", ({ policy, tls = true, want }) => {
    const parsed = fromJson(AccessPolicySchema, policy);
    let error: unknown;
    try {
      validateAccessPolicy(parsed, { clientCertificates: tls });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(FerryError);
    expect((error as FerryError).kind).toBe("invalid_argument");
    expect((error as FerryError).code).toBe("invalid_access_policy");
    expect((error as FerryError).message).toContain(want);
  });

  it("accepts every credential at once and writes the defaults out", () => {
    const policy = fromJson(AccessPolicySchema, {
      clientCaPem: caPem,
      rules: [
        { targets: ["crm"], paths: ["/api/", "/v1"], allowIps: ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"], require: ["apiKey", "jwt", "mtls", "basic"],
          jwt: { ...jwt, jwksUrl: "http://127.0.0.1:9999/jwks", claims: { groups: "crm-users", level: 3, staff: true, roles: ["a", "b"] } },
          basicUsers: [{ name: "plc-7", passwordHash: HASH }], rateLimit: { requests: 100, per: "1s" } },
        { name: "the rest", targets: ["*"], rateLimit: { requests: 5, per: "60s", burst: 10, by: "ip" } },
        { targets: ["erp"], require: ["jwt"], jwt: { issuer: "http://localhost:4000", audience: ["x"] } },
      ],
    });
    const before = toJson(AccessPolicySchema, policy);
    const out = toJson(AccessPolicySchema, validateAccessPolicy(policy, { clientCertificates: true })) as { rules: Record<string, JsonValue>[] };
    expect(out.rules.map((r) => r.name)).toEqual(["rule 1", "the rest", "rule 3"]);
    expect(out.rules[0]!.rateLimit).toEqual({ requests: 100, per: "1s", burst: 100, by: "client" });
    expect(out.rules[1]!.rateLimit).toEqual({ requests: 5, per: "60s", burst: 10, by: "ip" });
    expect(out.rules[2]!.jwt).toMatchObject({ clockSkew: "30s", algorithms: ["RS256", "PS256", "ES256", "EdDSA"] });
    expect(toJson(AccessPolicySchema, policy)).toEqual(before); // the input is left as it was
  });

  it("takes mtls without a TLS listener when the rule accepts another credential too", () => {
    const policy = fromJson(AccessPolicySchema, { clientCaPem: caPem, rules: [{ targets: ["crm"], require: ["mtls", "apiKey"] }] });
    expect(validateAccessPolicy(policy, { clientCertificates: false }).rules[0]!.require).toEqual(["mtls", "apiKey"]);
  });

  it("takes an empty policy (every target public)", () => {
    expect(validateAccessPolicy(fromJson(AccessPolicySchema, {}), { clientCertificates: false }).rules).toEqual([]);
  });
});
