import { clone } from "@bufbuild/protobuf";
import type { Value } from "@bufbuild/protobuf/wkt";
import {
  type AccessPolicy,
  AccessPolicySchema,
  type AccessRule,
  type JwtRule,
} from "../../gen/ferry/access/v1/access_policy_pb.js";
import { durationFromMs, formatDuration, msFromDuration } from "../../core/duration.js";
import { FerryError } from "../../core/errors.js";
import { isDnsLabel } from "../../core/names.js";
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

export const CREDENTIAL_KINDS: readonly CredentialKind[] = ["apiKey", "jwt", "mtls", "basic"];
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
  return out;
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
    if (!(CREDENTIAL_KINDS as readonly string[]).includes(k)) fail(`${r}: require: ${JSON.stringify(k)} is not a credential: use apiKey, jwt, mtls or basic`);
    kinds.add(k);
  }
  checkApiKeyHeader(rule, r, kinds.has("apiKey"));
  checkJwt(rule, r, kinds.has("jwt"));
  checkBasic(rule, r, kinds.has("basic"));
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
