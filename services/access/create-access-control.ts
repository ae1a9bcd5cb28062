import type { AccessPolicy, JwtRule, LoginRule } from "../../gen/ferry/access/v1/access_policy_pb.js";
import { FerryError } from "../../core/errors.js";
import { createSourceBackoff, type SourceBackoff } from "../auth/source-backoff.js";
import { sourceKey } from "../auth/source-key.js";
import { DEFAULT_LIMITS } from "../limits/limits.js";
import type { AccessControl, AccessDecision, AccessDenied, AccessGranted, AccessRequest, ClientKeyCheck, MaybeAsync } from "./access-control.js";
import { deny, policyUnusable, tooManyFailures } from "./access-denials.js";
import { createScryptGate, type ScryptGate } from "./basic-auth.js";
import { type CompiledPolicy, type CompiledRule, compilePolicy } from "./compile-policy.js";
import { checkCredential, type CredentialOutcome } from "./credential-check.js";
import { bucketKey, createRateLimiter, type RateVerdict } from "./rate-limit.js";
import { matchRule } from "./rule-match.js";
import type { SecretBox } from "../auth/secret-box.js";
import { openLoginSecret } from "./login-secret.js";

export interface AccessControlDeps {
  /** The tenant's policy, already validated (validateAccessPolicy); undefined: none. A new object is a new policy. */
  policyOf(tenant: string): AccessPolicy | undefined;
  /** The tenant's stored policy cannot be used (policyOf then gives a deny-all stand-in): refused as policy_unusable. */
  unusable?(tenant: string): boolean;
  checkClientKey(secret: string): ClientKeyCheck;
  /** Fails with FerryError kind "unauthenticated", code "jwt_expired" | "jwt_invalid" | "jwt_claims"; any other failure refuses as policy_unusable. */
  verifyJwt(token: string, rule: JwtRule): MaybeAsync<{ subject: string }>;
  /** Failed client credentials per source; default: one of its own with the default limits. Keep it apart from the admin's and the connectors'. */
  backoff?: SourceBackoff;
  now?: () => number;
  /** This node's part of every rate limit (see rate-limit.ts); default 1. */
  share?: () => number;
  /** Bounds the scrypt runs of Basic checks (see basic-auth.ts); default 2 at once, 32 waiting. */
  scrypt?: ScryptGate;
  /** Rate limit buckets kept; default 100,000. */
  maxBuckets?: number;
  /** The operator's secret keys: they open sealed login client secrets and seal sessions. Without them, "login" rules refuse everyone. */
  secrets?: SecretBox;
  /** Environment variables, for a login rule's clientSecretEnv; default process.env. */
  env?: NodeJS.ProcessEnv;
}

const NO_HEADERS: readonly string[] = Object.freeze([]);

/**
 * The policy engine: the first rule that matches the request's target and
 * path applies, checked in this order, each refusal final:
 *
 * 1. denyIps, then allowIps (403 ip_denied / ip_not_allowed);
 * 2. for a rule that wants a credential, the source's back-off (429 too_many_failures);
 * 3. a rate limit by "ip" or "rule" (429 rate_limited): before the credential,
 *    so a flood costs no key lookup, token check or scrypt run;
 * 4. the credential (credential-check.ts): 401, or 403 for a key scoped to
 *    other targets and for a token without the claims;
 * 5. a rate limit by "client": after the credential, since its bucket is the
 *    credential's subject (a rule without credentials: the client's address).
 *    A wrong credential takes no token from anyone's bucket; the back-off
 *    and the scrypt gate are what bound those.
 *
 * Policies are compiled on first use and cached by object identity, so a
 * changed policy (a new object from the state) applies from its next request.
 * Never throws or rejects; answers at once unless the credential needs I/O or scrypt.
 */
export function createAccessControl(deps: AccessControlDeps): AccessControl {
  const now = deps.now ?? Date.now;
  const backoff = deps.backoff ?? createSourceBackoff(DEFAULT_LIMITS, { now });
  const gate = deps.scrypt ?? createScryptGate();
  const limiter = createRateLimiter({ now, ...(deps.share ? { share: deps.share } : {}), ...(deps.maxBuckets ? { maxBuckets: deps.maxBuckets } : {}) });
  // Weak: a replaced policy's compiled form goes with it.
  const compiled = new WeakMap<AccessPolicy, CompiledPolicy>();
  const credentials = { checkClientKey: deps.checkClientKey, verifyJwt: deps.verifyJwt, now, ...(deps.secrets ? { secrets: deps.secrets } : {}) };
  const secrets = deps.secrets;
  const env = deps.env ?? process.env;
  const loginSecret = secrets ? (login: LoginRule, tenant: string) => openLoginSecret(secrets, login, tenant, env) : undefined;

  // A policy belongs to one tenant (its sealed secrets are bound to it), so identity is enough of a key.
  const compiledOf = (policy: AccessPolicy, tenant: string): CompiledPolicy => {
    let c = compiled.get(policy);
    if (!c) {
      c = compilePolicy(policy, { gate, now, tenant, ...(loginSecret ? { loginSecret } : {}) });
      compiled.set(policy, c);
    }
    return c;
  };

  const take = (req: Pick<AccessRequest, "tenant">, rule: CompiledRule, who: string): RateVerdict => limiter.take(bucketKey(req.tenant, rule.name, who), rule.limit!.spec);

  const limited = (req: Pick<AccessRequest, "target">, rule: CompiledRule, verdict: RateVerdict & { ok: false }) =>
    deny(rule.name, "rate_limited", "resource_exhausted", `too many requests for target "${req.target}": retry in ${verdict.retryAfterSeconds}s`, {
      retryAfterSeconds: verdict.retryAfterSeconds,
      headers: verdict.headers,
    });

  /** Steps 2 and 3: the source's back-off (for a rule that wants a credential), a rate limit by ip or rule. */
  const beforeCredential = (req: Pick<AccessRequest, "tenant" | "target" | "clientAddress">, rule: CompiledRule): AccessDenied | undefined => {
    if (rule.require.length > 0) {
      const wait = backoff.waitMs(req.clientAddress);
      if (wait > 0) return tooManyFailures(rule.name, wait);
    }
    const by = rule.limit?.by;
    if (by === "ip" || by === "rule") {
      const verdict = take(req, rule, by === "ip" ? byIp(req.clientAddress) : "");
      if (!verdict.ok) return limited(req, rule, verdict);
    }
    return undefined;
  };

  const decide = (req: AccessRequest, policy: AccessPolicy): MaybeAsync<AccessDecision> => {
    const rule = matchRule(compiledOf(policy, req.tenant).rules, req.target, req.path);
    if (!rule) return granted(undefined, "none", req.clientAddress, NO_HEADERS);
    if (rule.broken !== undefined) return policyUnusable(rule.name, req.tenant, rule.broken);
    const address = req.clientAddress;
    const refusedAddress = addressRefusal(rule, req.target, address);
    if (refusedAddress) return refusedAddress;
    // A CORS preflight never carries credentials (browsers leave them out): it passes to the target's CORS answer.
    if (req.preflight) return granted(rule.name, "none", address, NO_HEADERS);
    const refusedEarly = beforeCredential(req, rule);
    if (refusedEarly) return refusedEarly;
    const by = rule.limit?.by;
    if (rule.require.length === 0) {
      if (by === "client") {
        const verdict = take(req, rule, byIp(address));
        if (!verdict.ok) return limited(req, rule, verdict);
      }
      return granted(rule.name, "none", address, NO_HEADERS);
    }
    const outcome = checkCredential(credentials, rule, req);
    return outcome instanceof Promise ? outcome.then((o) => credentialChecked(req, rule, o)) : credentialChecked(req, rule, outcome);
  };

  const credentialChecked = (req: AccessRequest, rule: CompiledRule, outcome: CredentialOutcome): AccessDecision => {
    if (!outcome.ok) {
      if (outcome.failure) backoff.failed(req.clientAddress);
      return outcome.denial;
    }
    backoff.succeeded(req.clientAddress);
    if (rule.limit?.by === "client") {
      const verdict = take(req, rule, `${outcome.method}:${outcome.subject}`);
      if (!verdict.ok) return limited(req, rule, verdict);
    }
    const grant = granted(rule.name, outcome.method, outcome.subject, outcome.consumed);
    if (outcome.profile) grant.profile = outcome.profile;
    if (outcome.renewedSession) grant.renewedSession = outcome.renewedSession;
    return grant;
  };

  /** A refusal for whatever went wrong inside: the rule it happened under, if it can be told. */
  const failed = (req: AccessRequest, policy: AccessPolicy | undefined, err: unknown): AccessDecision => {
    const rule = policy ? (matchRule(safeRules(policy), req.target, req.path)?.name ?? "") : "";
    // The identity provider cannot be reached (keys, discovery): a 503 the client may retry, not its fault.
    if (err instanceof FerryError && err.kind === "unavailable") {
      return deny(rule, "policy_unusable", "unavailable", err.message, { retryAfterSeconds: err.extra.retryAfterSeconds ?? 1 });
    }
    return policyUnusable(rule, req.tenant, err);
  };

  return {
    loginFor(tenant, target, path) {
      try {
        const policy = deps.unusable?.(tenant) ? undefined : deps.policyOf(tenant);
        if (!policy) return undefined;
        const rules = compiledOf(policy, tenant).rules.filter((r) => r.targets.includes("*") || r.targets.includes(target));
        const rule = path === undefined ? rules.find((r) => r.login) : matchRule(rules, target, path);
        if (!rule?.login || rule.broken !== undefined) return undefined;
        const claimRules = rules.flatMap((r) => (r.login ? [r.login.claims] : []));
        const where = { tenant, target };
        return {
          rule: rule.name,
          login: rule.login,
          claimRules,
          screen: (clientAddress) => addressRefusal(rule, target, clientAddress) ?? beforeCredential({ ...where, clientAddress }, rule),
          failed: (clientAddress) => void backoff.failed(clientAddress),
          succeeded: (clientAddress) => backoff.succeeded(clientAddress),
        };
      } catch {
        return undefined;
      }
    },
    applies(tenant) {
      try {
        return (deps.policyOf(tenant)?.rules.length ?? 0) > 0;
      } catch {
        return true; // then `check` says policy_unusable: a policy that cannot even be read lets nobody through
      }
    },
    check(req) {
      let policy: AccessPolicy | undefined;
      try {
        if (deps.unusable?.(req.tenant)) return policyUnusable("", req.tenant, new Error("the stored policy cannot be used"));
        policy = deps.policyOf(req.tenant);
        if (!policy || policy.rules.length === 0) return granted(undefined, "none", req.clientAddress, NO_HEADERS);
        const decision = decide(req, policy);
        const used = policy;
        return decision instanceof Promise ? decision.catch((err: unknown) => failed(req, used, err)) : decision;
      } catch (err) {
        return failed(req, policy, err);
      }
    },
  };
}

function granted(rule: string | undefined, method: AccessGranted["method"], subject: string, consumedHeaders: readonly string[]): AccessGranted {
  return { allowed: true, ...(rule !== undefined ? { rule } : {}), method, subject, consumedHeaders };
}

/** The rules with their names, for naming the rule of a refusal even when compiling failed. */
function safeRules(policy: AccessPolicy): { name: string; targets: string[]; paths: string[] }[] {
  try {
    return policy.rules.map((r, i) => ({ name: r.name || `rule ${i + 1}`, targets: r.targets, paths: r.paths }));
  } catch {
    return [];
  }
}

/** Step 1: denyIps, then allowIps. */
function addressRefusal(rule: CompiledRule, target: string, address: string): AccessDenied | undefined {
  if (rule.deny?.has(address)) return deny(rule.name, "ip_denied", "permission_denied", `address ${address} may not reach target "${target}"`);
  if (rule.allow && !rule.allow.has(address)) {
    return deny(rule.name, "ip_not_allowed", "permission_denied", `address ${address || "(unknown)"} is not among those allowed to reach target "${target}"`);
  }
  return undefined;
}

/** The bucket of a client known by its address only. */
function byIp(address: string): string {
  return `ip:${sourceKey(address)}`;
}
