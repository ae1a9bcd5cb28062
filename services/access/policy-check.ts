import { clone } from "@bufbuild/protobuf";
import type { Value } from "@bufbuild/protobuf/wkt";
import {
  type AccessPolicy,
  AccessPolicySchema,
  type AccessRule,
  type JwtRule,
  type LoginRule,
} from "../../gen/ferry/access/v1/access_policy_pb.js";
import { durationFromMs, formatDuration, msFromDuration } from "../../core/duration.js";
import { FerryError } from "../../core/errors.js";
import { isDnsLabel } from "../../core/names.js";
import { timestampInRange } from "../../core/timestamp-range.js";
import type { CredentialKind } from "./access-control.js";
import { parsePasswordHash } from "./basic-auth.js";
import { parseCaBundle } from "./client-cert.js";
import { parseCidr } from "./ip-rules.js";
import { idpUrlProblem } from "./jwt-fetch.js";
import { DEFAULT_CLOCK_SKEW_MS, DEFAULT_JWT_ALGORITHMS, JWT_ALGORITHMS, MAX_CLOCK_SKEW_MS } from "./jwt-verifier.js";

/** What one policy may hold (docs/security.md): a policy is compiled and kept in memory on every node. */
export const POLICY_LIMITS = Object.freeze({
  rules: 100,
  /** targets, paths, allowIps, denyIps, require, jwt.audience, jwt.algorithms, jwt.claims, a claim's list. */
  listEntries: 256,
  clientCaPemBytes: 64 * 1024,
  basicUsers: 1000,
  nameChars: 64,
  minPeriodMs: 1,
  maxPeriodMs: 86_400_000,
});

export const CREDENTIAL_KINDS: readonly CredentialKind[] = ["apiKey", "jwt", "mtls", "basic", "login"];
/** Login sessions: how long one may go unused, and last at most (defaults, bounds). */
export const LOGIN_SESSION = Object.freeze({ idleMs: 3_600_000, maxMs: 43_200_000, minMs: 60_000, ceilingMs: 30 * 86_400_000 });
export const DEFAULT_LOGIN_SCOPES: readonly string[] = ["openid", "email", "profile"];
export const RATE_LIMIT_BY = ["client", "ip", "rule"] as const;
export type RateLimitBy = (typeof RATE_LIMIT_BY)[number];
/** Headers that cannot carry a client key: the relay or HTTP itself needs them as they are. */
const RESERVED_HEADERS = new Set([
  "host", "connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer", "transfer-encoding",
  "upgrade", "content-length", "content-type", "cookie", "forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
]);

/**
 * Checks a tenant's access policy before it is stored (`ferry admin access
 * set`), and returns it normalized: every default written out (rule names
 * "rule N", burst = requests, by = client, the JWT clock skew and
 * algorithms), so what `access get` shows is what applies. Throws
 * invalid_argument "invalid_access_policy" at the first problem, naming the
 * rule (by name, else "rule N") and the field, and saying what is allowed.
 *
 * Beyond the single fields it refuses what would quietly do something else
 * than meant: a `jwt`, `basicUsers` or `apiKeyHeader` on a rule whose
 * `require` does not name its credential (that rule would let everyone in),
 * and a rule that accepts only mtls on a relay that does not ask clients for certificates.
 */
export function validateAccessPolicy(policy: AccessPolicy, opts: { clientCertificates: boolean }): AccessPolicy {
  if (policy.rules.length > POLICY_LIMITS.rules) fail(`rules: at most ${POLICY_LIMITS.rules} rules (this policy has ${policy.rules.length})`);
  const out = clone(AccessPolicySchema, policy);
  if (Buffer.byteLength(out.clientCaPem) > POLICY_LIMITS.clientCaPemBytes) fail(`clientCaPem: at most ${POLICY_LIMITS.clientCaPemBytes / 1024} KiB of PEM`);
  if (out.clientCaPem.trim() !== "") {
    const cas = parseCaBundle(out.clientCaPem);
    if (typeof cas === "string") fail(`clientCaPem ${cas}`);
  }
  const names = new Map<string, number>();
  out.rules.forEach((rule, i) => {
    // A name the operator chose is how they know the rule; its position only when there is none.
    const label = rule.name === "" ? `rule ${i + 1}` : `rule ${JSON.stringify(rule.name)}`;
    checkName(rule, i, names);
    checkRule(rule, label, out, opts);
  });
  checkOneLoginPerTarget(out);
  return out;
}

/**
 * A target has one login session (one cookie, at its host or path), so every rule that signs people in for it must
 * use the same provider and client; rules for different paths may still ask for different claims.
 */
function checkOneLoginPerTarget(policy: AccessPolicy): void {
  const logins = policy.rules.filter((rule) => rule.login !== undefined);
  for (let i = 0; i < logins.length; i++) {
    for (let j = i + 1; j < logins.length; j++) {
      const [a, b] = [logins[i]!, logins[j]!];
      const shared = a.targets.includes("*") || b.targets.includes("*") || a.targets.some((t) => b.targets.includes(t));
      if (shared && (a.login!.issuer !== b.login!.issuer || a.login!.clientId !== b.login!.clientId)) {
        fail(
          `rule ${JSON.stringify(b.name)}: login uses another issuer or client id than rule ${JSON.stringify(a.name)} for a target both apply to: ` +
            "a target has one login session, so its rules must sign people in at the same provider with the same client",
        );
      }
    }
  }
}

function checkName(rule: AccessRule, i: number, names: Map<string, number>): void {
  if (rule.name === "") rule.name = `rule ${i + 1}`;
  const at = `rule ${i + 1}`;
  if (rule.name.length > POLICY_LIMITS.nameChars || !/^[\x20-\x7e]+$/.test(rule.name) || /["\\]/.test(rule.name) || rule.name.trim() !== rule.name) {
    fail(
      `${at}: name ${JSON.stringify(rule.name)} must be 1-${POLICY_LIMITS.nameChars} printable ASCII characters, ` +
        "without quotes, backslashes or spaces at either end",
    );
  }
  const other = names.get(rule.name);
  if (other !== undefined) fail(`${at}: name "${rule.name}" is already the name of rule ${other + 1}: rule names must be unique`);
  names.set(rule.name, i);
}

function checkRule(rule: AccessRule, r: string, policy: AccessPolicy, opts: { clientCertificates: boolean }): void {
  const list = (field: string, entries: readonly unknown[]) => {
    if (entries.length > POLICY_LIMITS.listEntries) fail(`${r}: ${field}: at most ${POLICY_LIMITS.listEntries} entries`);
  };
  list("targets", rule.targets);
  list("paths", rule.paths);
  list("allowIps", rule.allowIps);
  list("denyIps", rule.denyIps);
  list("require", rule.require);

  if (rule.targets.length === 0) fail(`${r}: targets: at least one target name (or "*" for every target) is needed`);
  for (const t of rule.targets) {
    if (t !== "*" && !isDnsLabel(t)) fail(`${r}: targets: ${JSON.stringify(t)} is neither a target name (a DNS label: a-z, 0-9 and '-') nor "*"`);
  }
  for (const p of rule.paths) {
    if (!p.startsWith("/")) fail(`${r}: paths: ${JSON.stringify(p)} must start with "/"`);
    if (p.includes("..") || /(^|\/)\.(\/|$)/.test(p)) {
      fail(`${r}: paths: ${JSON.stringify(p)} may not contain ".." or "." segments: requests are matched after the relay resolves them`);
    }
    if (/[?#\\\s\u0000-\u001f\u007f]/.test(p)) fail(`${r}: paths: ${JSON.stringify(p)} may not contain "?", "#", "\\", spaces or control characters`);
  }
  for (const [field, cidrs] of [["allowIps", rule.allowIps], ["denyIps", rule.denyIps]] as const) {
    for (const c of cidrs) {
      const parsed = parseCidr(c);
      if (typeof parsed === "string") fail(`${r}: ${field}: ${JSON.stringify(c)} ${parsed}`);
    }
  }
  const kinds = new Set<string>();
  for (const k of rule.require) {
    if (!(CREDENTIAL_KINDS as readonly string[]).includes(k)) fail(`${r}: require: ${JSON.stringify(k)} is not a credential: use apiKey, jwt, mtls, basic or login`);
    kinds.add(k);
  }
  checkApiKeyHeader(rule, r, kinds.has("apiKey"));
  checkJwt(rule, r, kinds.has("jwt"));
  checkBasic(rule, r, kinds.has("basic"));
  checkLogin(rule, r, kinds.has("login"));
  if (kinds.has("mtls")) {
    if (policy.clientCaPem.trim() === "") fail(`${r}: require names mtls, so clientCaPem (the CA certificates that sign the clients' certificates) is needed`);
    if (!opts.clientCertificates && kinds.size === 1) {
      fail(
        `${r}: this relay does not ask clients for certificates, so a rule that accepts only mtls can never match ` +
          "(start the relay with --client-certificates and TLS, or accept another credential too)",
      );
    }
  }
  checkRateLimit(rule, r);
}

function checkApiKeyHeader(rule: AccessRule, r: string, required: boolean): void {
  if (rule.apiKeyHeader === "") return;
  if (!required) fail(`${r}: apiKeyHeader is set but require does not name apiKey: add apiKey to require, or remove apiKeyHeader`);
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$/.test(rule.apiKeyHeader)) {
    fail(`${r}: apiKeyHeader ${JSON.stringify(rule.apiKeyHeader)} is not a header name (letters, digits and -, at most 64)`);
  }
  const lower = rule.apiKeyHeader.toLowerCase();
  if (RESERVED_HEADERS.has(lower) || lower.startsWith("x-ferry-") || lower.startsWith(":")) {
    fail(`${r}: apiKeyHeader "${rule.apiKeyHeader}" cannot carry a client key: HTTP or the relay needs it; use e.g. X-Api-Key`);
  }
}

function checkJwt(rule: AccessRule, r: string, required: boolean): void {
  const jwt = rule.jwt;
  if (!required) {
    if (jwt) fail(`${r}: jwt is set but require does not name jwt, so no token would be checked: add jwt to require, or remove jwt`);
    return;
  }
  if (!jwt) fail(`${r}: require names jwt, so jwt (issuer and audience at least) is needed`);
  if (jwt.issuer === "") fail(`${r}: jwt.issuer is needed (the identity provider's issuer URL, e.g. https://login.example.com/acme)`);
  checkUrl(`${r}: jwt.issuer`, jwt.issuer);
  if (jwt.jwksUrl !== "") checkUrl(`${r}: jwt.jwksUrl`, jwt.jwksUrl);
  if (jwt.audience.length === 0) fail(`${r}: jwt.audience: at least one audience is needed (the token's "aud", e.g. api://crm)`);
  if (jwt.audience.length > POLICY_LIMITS.listEntries) fail(`${r}: jwt.audience: at most ${POLICY_LIMITS.listEntries} entries`);
  if (jwt.audience.some((a) => a === "")) fail(`${r}: jwt.audience: an audience may not be empty`);
  if (jwt.algorithms.length > POLICY_LIMITS.listEntries) fail(`${r}: jwt.algorithms: at most ${POLICY_LIMITS.listEntries} entries`);
  for (const alg of jwt.algorithms) {
    if (!JWT_ALGORITHMS.includes(alg)) {
      const why = alg.toLowerCase() === "none" || /^HS/i.test(alg) ? "is never accepted" : "is not an algorithm Ferry accepts";
      fail(`${r}: jwt.algorithms: ${JSON.stringify(alg)} ${why}: only asymmetric ones (${JWT_ALGORITHMS.join(", ")}), never "none" or HS*`);
    }
  }
  if (jwt.algorithms.length === 0) jwt.algorithms = [...DEFAULT_JWT_ALGORITHMS];
  checkClockSkew(jwt, r);
  const claims = Object.entries(jwt.claims);
  if (claims.length > POLICY_LIMITS.listEntries) fail(`${r}: jwt.claims: at most ${POLICY_LIMITS.listEntries} claims`);
  for (const [name, value] of claims) checkClaim(`${r}: jwt.claims.${name}`, value);
}

function checkClockSkew(jwt: JwtRule, r: string): void {
  if (!jwt.clockSkew) {
    jwt.clockSkew = durationFromMs(DEFAULT_CLOCK_SKEW_MS);
    return;
  }
  const ms = msFromDuration(jwt.clockSkew) ?? 0;
  if (jwt.clockSkew.seconds < 0n || jwt.clockSkew.nanos < 0 || ms > MAX_CLOCK_SKEW_MS) {
    fail(`${r}: jwt.clockSkew must be between 0s and ${formatDuration(MAX_CLOCK_SKEW_MS)} (default ${formatDuration(DEFAULT_CLOCK_SKEW_MS)})`);
  }
}

function checkClaim(at: string, value: Value): void {
  const scalar = (v: Value) => v.kind.case === "stringValue" || v.kind.case === "numberValue" || v.kind.case === "boolValue";
  if (scalar(value)) return;
  if (value.kind.case === "listValue") {
    const values = value.kind.value.values;
    if (values.length > 0 && values.length <= POLICY_LIMITS.listEntries && values.every(scalar)) return;
  }
  fail(`${at} must be a string, number or boolean, or a list (1-${POLICY_LIMITS.listEntries}) of them`);
}

/** https, or http to a loopback host (a provider on the relay's own machine, as in the tests): the verifier's own rule. */
function checkUrl(at: string, text: string): void {
  const problem = idpUrlProblem(text);
  if (problem) fail(`${at} ${JSON.stringify(text)} ${problem}`);
}

function checkBasic(rule: AccessRule, r: string, required: boolean): void {
  if (!required) {
    if (rule.basicUsers.length > 0) fail(`${r}: basicUsers is set but require does not name basic: add basic to require, or remove basicUsers`);
    return;
  }
  if (rule.basicUsers.length === 0) fail(`${r}: require names basic, so basicUsers needs at least one user`);
  if (rule.basicUsers.length > POLICY_LIMITS.basicUsers) fail(`${r}: basicUsers: at most ${POLICY_LIMITS.basicUsers} users`);
  const seen = new Set<string>();
  rule.basicUsers.forEach((u, i) => {
    const at = `${r}: basicUsers[${i}]`;
    if (u.name === "" || u.name.length > 256 || u.name.includes(":") || /[\u0000-\u001f\u007f]/.test(u.name)) {
      fail(`${at}.name ${JSON.stringify(u.name)} must be 1-256 characters, without ":" or control characters`);
    }
    if (seen.has(u.name)) fail(`${at}.name "${u.name}" appears twice`);
    seen.add(u.name);
    const hash = parsePasswordHash(u.passwordHash);
    if (typeof hash === "string") fail(`${at} ("${u.name}").passwordHash ${hash}`);
  });
}

function checkLogin(rule: AccessRule, r: string, required: boolean): void {
  const login = rule.login;
  if (!required) {
    if (login) fail(`${r}: login is set but require does not name login, so nobody would be asked to sign in: add login to require, or remove login`);
    return;
  }
  if (!login) fail(`${r}: require names login, so login (issuer, clientId and clientSecret at least) is needed`);
  if (login.issuer === "") fail(`${r}: login.issuer is needed (the identity provider's issuer URL, e.g. https://login.example.com/acme)`);
  checkUrl(`${r}: login.issuer`, login.issuer);
  if (!/^[\x21-\x7e]{1,256}$/.test(login.clientId)) fail(`${r}: login.clientId is needed: 1-256 printable ASCII characters, as registered at the provider`);
  checkLoginSecret(login, r);
  if (login.scopes.length > 32) fail(`${r}: login.scopes: at most 32 scopes`);
  for (const s of login.scopes) {
    if (!/^[\x21\x23-\x5b\x5d-\x7e]{1,128}$/.test(s)) fail(`${r}: login.scopes: ${JSON.stringify(s)} is not a scope (printable ASCII without spaces, quotes or backslashes)`);
  }
  if (login.scopes.length === 0) login.scopes = [...DEFAULT_LOGIN_SCOPES];
  else if (!login.scopes.includes("openid")) login.scopes.unshift("openid");
  login.scopes = [...new Set(login.scopes)];
  if (login.allowedEmailDomains.length > POLICY_LIMITS.listEntries) fail(`${r}: login.allowedEmailDomains: at most ${POLICY_LIMITS.listEntries} entries`);
  login.allowedEmailDomains = login.allowedEmailDomains.map((d) => d.toLowerCase());
  for (const d of login.allowedEmailDomains) {
    if (!/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/.test(d)) {
      fail(`${r}: login.allowedEmailDomains: ${JSON.stringify(d)} is not a domain name (e.g. example.com)`);
    }
  }
  const claims = Object.entries(login.claims);
  if (claims.length > 32) fail(`${r}: login.claims: at most 32 claims (the session cookie carries them)`);
  for (const [name, value] of claims) {
    if (!/^[\x21-\x7e]{1,64}$/.test(name)) fail(`${r}: login.claims: ${JSON.stringify(name)} is not a claim name (1-64 printable ASCII characters)`);
    checkClaim(`${r}: login.claims.${name}`, value);
  }
  const idle = sessionMs(login.sessionIdle, LOGIN_SESSION.idleMs, `${r}: login.sessionIdle`);
  const max = sessionMs(login.sessionMax, Math.max(LOGIN_SESSION.maxMs, idle), `${r}: login.sessionMax`);
  if (max < idle) fail(`${r}: login.sessionMax (${formatDuration(max)}) must be at least login.sessionIdle (${formatDuration(idle)})`);
  login.sessionIdle = durationFromMs(idle);
  login.sessionMax = durationFromMs(max);
  if (login.sessionsNotBefore && timestampInRange(login.sessionsNotBefore, 0, MAX_TIMESTAMP_MS) === undefined) {
    fail(`${r}: login.sessionsNotBefore must be a time between 1970 and 9999 (RFC 3339, e.g. 2026-12-07T14:00:00Z)`);
  }
}

/** 9999-12-31T23:59:59.999Z, the end of what RFC 3339 and protobuf's Timestamp can say. */
const MAX_TIMESTAMP_MS = 253_402_300_799_999;

/** The client secret comes one way only: in the file (then sealed by the relay), sealed before, or from the environment. */
function checkLoginSecret(login: LoginRule, r: string): void {
  if (login.clientSecretEnv !== "") {
    if (login.clientSecret !== "" || login.clientSecretSealed !== "") fail(`${r}: login: give clientSecret or clientSecretEnv, not both`);
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(login.clientSecretEnv)) fail(`${r}: login.clientSecretEnv ${JSON.stringify(login.clientSecretEnv)} is not an environment variable name`);
    return;
  }
  // A secret given again replaces the sealed one a policy read back carries.
  if (login.clientSecret !== "") {
    if (login.clientSecret.length > 1024 || /[\u0000-\u001f\u007f]/.test(login.clientSecret)) fail(`${r}: login.clientSecret must be at most 1024 characters, without control characters`);
    login.clientSecretSealed = "";
    return;
  }
  if (login.clientSecretSealed === "") fail(`${r}: login needs the client's secret: clientSecret (sealed by the relay at once), or clientSecretEnv`);
}

function sessionMs(d: LoginRule["sessionIdle"], fallback: number, at: string): number {
  if (!d) return fallback;
  const ms = msFromDuration(d) ?? -1;
  if (d.seconds < 0n || d.nanos < 0 || ms < LOGIN_SESSION.minMs || ms > LOGIN_SESSION.ceilingMs) {
    fail(`${at} must be between ${formatDuration(LOGIN_SESSION.minMs)} and ${formatDuration(LOGIN_SESSION.ceilingMs)}`);
  }
  return ms;
}

function checkRateLimit(rule: AccessRule, r: string): void {
  const limit = rule.rateLimit;
  if (!limit) return;
  if (limit.requests < 1) fail(`${r}: rateLimit.requests must be at least 1`);
  const per = msFromDuration(limit.per);
  const { minPeriodMs, maxPeriodMs } = POLICY_LIMITS;
  if (per === undefined || limit.per!.seconds < 0n || limit.per!.nanos < 0 || per < minPeriodMs || per > maxPeriodMs) {
    fail(`${r}: rateLimit.per must be between 1ms and 1d (e.g. 1s, 60s)`);
  }
  if (limit.by === "") limit.by = "client";
  if (!(RATE_LIMIT_BY as readonly string[]).includes(limit.by)) fail(`${r}: rateLimit.by ${JSON.stringify(limit.by)} is not one of client, ip, rule`);
  if (limit.burst === 0) limit.burst = limit.requests;
}

function fail(message: string): never {
  throw new FerryError("invalid_argument", "invalid_access_policy", message);
}
