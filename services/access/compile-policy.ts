import type { AccessPolicy, AccessRule, JwtRule, LoginRule } from "../../gen/ferry/access/v1/access_policy_pb.js";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { msFromDuration } from "../../core/duration.js";
import type { CredentialKind } from "./access-control.js";
import { type BasicVerifier, createBasicVerifier, type ScryptGate } from "./basic-auth.js";
import { type ClientCertVerifier, createClientCertVerifier, parseCaBundle } from "./client-cert.js";
import { compileIpList, type IpList } from "./ip-rules.js";
import type { RateLimitBy } from "./policy-check.js";
import type { RateSpec } from "./rate-limit.js";
import type { RuleScope } from "./rule-match.js";
import type { CompiledLogin } from "./login-session.js";

export interface CompileOptions {
  gate: ScryptGate;
  now: () => number;
  /** The tenant the policy is of (sealed client secrets are bound to it). */
  tenant: string;
  /** A login rule's client secret: opened from its sealed form, or read from its environment variable; throws when it cannot be had. */
  loginSecret?: (login: LoginRule, tenant: string) => string;
}

/** One rule, ready to apply: what a request pays for is a lookup, never a parse. */
export interface CompiledRule extends RuleScope {
  name: string;
  /** Set when the rule could not be compiled (a bug, or a stored policy this version cannot read): it refuses everyone. */
  broken?: unknown;
  allow?: IpList;
  deny?: IpList;
  require: readonly CredentialKind[];
  /** The header a client key comes in, lower-case; undefined: Authorization, as Bearer. */
  apiKeyHeader?: string;
  /** The headers a granted credential of each kind is removed with. */
  consumes: { apiKey: readonly string[]; jwt: readonly string[]; basic: readonly string[] };
  jwt?: JwtRule;
  basic?: BasicVerifier;
  certificates?: ClientCertVerifier;
  login?: CompiledLogin;
  limit?: { spec: RateSpec; by: RateLimitBy };
}

export interface CompiledPolicy {
  rules: readonly CompiledRule[];
}

const AUTHORIZATION: readonly string[] = Object.freeze(["authorization"]);
const NOTHING: readonly string[] = Object.freeze([]);

/**
 * Compiles a validated policy: CIDRs into BlockLists, password hashes and
 * CA certificates parsed, defaults applied. A rule that fails to compile is
 * kept, marked broken, so it refuses the requests it matches (fail closed)
 * while the policy's other rules go on working.
 */
export function compilePolicy(policy: AccessPolicy, opts: CompileOptions): CompiledPolicy {
  let certificates: ClientCertVerifier | Error | undefined;
  const certificatesOf = (): ClientCertVerifier => {
    if (certificates === undefined) {
      const cas = parseCaBundle(policy.clientCaPem);
      certificates = typeof cas === "string" ? new Error(`clientCaPem ${cas}`) : createClientCertVerifier(cas);
    }
    if (certificates instanceof Error) throw certificates;
    return certificates;
  };
  return {
    rules: policy.rules.map((rule, i) => {
      const name = rule.name || `rule ${i + 1}`;
      try {
        return compileRule(rule, name, opts, certificatesOf);
      } catch (err) {
        return { name, targets: rule.targets, paths: rule.paths, broken: err, require: [], consumes: { apiKey: NOTHING, jwt: NOTHING, basic: NOTHING } };
      }
    }),
  };
}

function compileRule(rule: AccessRule, name: string, opts: CompileOptions, certificatesOf: () => ClientCertVerifier): CompiledRule {
  const require = [...new Set(rule.require)] as CredentialKind[];
  const apiKeyHeader = rule.apiKeyHeader === "" || rule.apiKeyHeader.toLowerCase() === "authorization" ? undefined : rule.apiKeyHeader.toLowerCase();
  const compiled: CompiledRule = {
    name,
    targets: rule.targets,
    paths: rule.paths,
    require,
    consumes: {
      apiKey: apiKeyHeader ? Object.freeze([apiKeyHeader]) : AUTHORIZATION,
      jwt: rule.jwt?.forward ? NOTHING : AUTHORIZATION,
      basic: AUTHORIZATION,
    },
  };
  if (rule.allowIps.length > 0) compiled.allow = compileIpList(rule.allowIps);
  if (rule.denyIps.length > 0) compiled.deny = compileIpList(rule.denyIps);
  if (apiKeyHeader) compiled.apiKeyHeader = apiKeyHeader;
  if (require.includes("jwt")) {
    if (!rule.jwt) throw new Error("require names jwt but the rule has no jwt");
    compiled.jwt = rule.jwt;
  }
  if (require.includes("basic")) compiled.basic = createBasicVerifier(rule.basicUsers, opts.gate, { now: opts.now });
  if (require.includes("mtls")) compiled.certificates = certificatesOf();
  if (require.includes("login")) compiled.login = compileLogin(rule, opts);
  if (rule.rateLimit) {
    const { requests, burst, by } = rule.rateLimit;
    const perMs = msFromDuration(rule.rateLimit.per) ?? 0;
    if (requests < 1 || perMs < 1) throw new Error("the rate limit has no requests or no period");
    compiled.limit = { spec: { name, requests, perMs, burst: burst || requests }, by: (by || "client") as RateLimitBy };
  }
  return compiled;
}

function compileLogin(rule: AccessRule, opts: CompileOptions): CompiledLogin {
  const login = rule.login;
  if (!login) throw new Error("require names login but the rule has no login");
  if (!opts.loginSecret) throw new Error("this relay has no secret key (--secret-key-file or FERRY_SECRET_KEY), so it cannot sign anyone in");
  const idleMs = msFromDuration(login.sessionIdle);
  const maxMs = msFromDuration(login.sessionMax);
  if (idleMs === undefined || maxMs === undefined) throw new Error("the login rule has no session durations (not normalized)");
  return {
    issuer: login.issuer,
    clientId: login.clientId,
    clientSecret: opts.loginSecret(login, opts.tenant),
    scopes: login.scopes,
    allowedEmailDomains: login.allowedEmailDomains,
    claims: login.claims,
    idleMs,
    maxMs,
    notBeforeMs: login.sessionsNotBefore ? timestampMs(login.sessionsNotBefore) : 0,
  };
}
