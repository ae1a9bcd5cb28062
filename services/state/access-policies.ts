import { clone, create, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromDate, timestampFromMs, timestampMs, timestampNow } from "@bufbuild/protobuf/wkt";
import { type AccessPolicy, AccessPolicySchema, AccessRuleSchema, type LoginRule } from "../../gen/ferry/access/v1/access_policy_pb.js";
import { type AccessPolicyRecord, AccessPolicyRecordSchema, type TenantRecord } from "../../gen/ferry/state/v1/state_pb.js";
import { FerryError } from "../../core/errors.js";
import { isDnsLabel } from "../../core/names.js";
import { validateAccessPolicy } from "../access/policy-check.js";
import type { RecordKind, StoredRecords } from "./stored-records.js";
import type { SecretBox } from "../auth/secret-box.js";
import { loginSecretEnvProblem, openLoginSecret, sealLoginSecret } from "../access/login-secret.js";

const POLICY: RecordKind<typeof AccessPolicyRecordSchema> = {
  prefix: "access-policy.",
  schema: AccessPolicyRecordSchema,
  check(r, id) {
    if (r.tenant !== id) return "policy_tenant_mismatch";
    if (!isDnsLabel(r.tenant)) return "policy_tenant_invalid";
    try {
      // Checked as a TLS node would: whether an "mtls" rule can match is this node's business per request,
      // and a node without TLS must not throw away a policy a node with TLS stored.
      validateAccessPolicy(r.policy ?? create(AccessPolicySchema), { clientCertificates: true });
    } catch {
      return "policy_invalid";
    }
    return undefined;
  },
};

/**
 * What getAccessPolicy returns for a tenant whose stored policy cannot be used
 * (undecodable, or failing validation: written by hand, by a hostile NATS
 * client, by a newer node with rules this one does not know). Fail closed: it
 * is a real policy that refuses every client of every target (its one rule
 * denies every address), so even code that never heard of it refuses; the
 * policy engine should tell it apart (`policyUnusable(tenant)`, or this very
 * object) and refuse with "policy_unusable". Frozen: shared by all such tenants.
 */
export const UNUSABLE_ACCESS_POLICY: AccessPolicy = deepFreeze(
  create(AccessPolicySchema, {
    rules: [create(AccessRuleSchema, { name: "stored policy unusable", targets: ["*"], denyIps: ["0.0.0.0/0", "::/0"] })],
  }),
);

/**
 * Each tenant's client access policy, stored as AccessPolicyRecord under
 * "access-policy.<tenant>" (no record: no policy, every target public).
 * Every stored policy is decoded and checked once per change, at start and
 * through the store's watch, into a map the gateway reads per request.
 */
export class AccessPolicies {
  /** Usable policies by tenant, or UNUSABLE_ACCESS_POLICY; absent: no policy. */
  private readonly byTenant = new Map<string, AccessPolicy>();

  constructor(
    private readonly records: StoredRecords,
    private readonly tenants: { requireTenant(name: string): TenantRecord },
  ) {
    // The watch first, then the load: a change arriving in between is not lost (refresh is idempotent).
    records.store.watch((change) => {
      if (change.key.startsWith(POLICY.prefix)) this.refresh(change.key.slice(POLICY.prefix.length), change.value);
    });
    for (const [key, json] of records.store.list(POLICY.prefix)) this.refresh(key.slice(POLICY.prefix.length), json);
  }

  /**
   * The tenant's policy, from memory: undefined when it has none (every target
   * public), UNUSABLE_ACCESS_POLICY when its stored one cannot be used. The
   * same object until the policy changes, so callers may cache what they
   * compile from it by identity. No allocation, no I/O: it runs per request.
   */
  getAccessPolicy(tenant: string): AccessPolicy | undefined {
    return this.byTenant.get(tenant);
  }

  /** Whether the tenant's stored policy cannot be used (its requests are then all refused: "policy_unusable"). */
  policyUnusable(tenant: string): boolean {
    return this.byTenant.get(tenant) === UNUSABLE_ACCESS_POLICY;
  }

  /**
   * The stored record, for the admin API: undefined when the tenant has no
   * policy. Throws not_found for a tenant that does not exist, and
   * failed_precondition for a stored policy that cannot be used.
   */
  getAccessPolicyRecord(tenant: string): AccessPolicyRecord | undefined {
    this.tenants.requireTenant(tenant);
    const record = this.records.read(POLICY, tenant);
    if (!record && this.records.has(POLICY, tenant)) {
      throw new FerryError(
        "failed_precondition",
        "access_policy_unusable",
        `the stored access policy of tenant "${tenant}" cannot be used, so every request to its targets is refused; set it again`,
      );
    }
    return record;
  }

  /**
   * Validates and replaces the tenant's policy (validateAccessPolicy: throws
   * invalid_argument naming the field). `tls`: whether this relay has a TLS
   * listener (an "mtls" rule cannot match without one). An empty policy (no
   * rules, no CA) deletes the record: every target public again. `before` is
   * undefined when there was no usable policy (`replacedUnusable` says which).
   */
  async setAccessPolicy(
    tenant: string,
    policy: AccessPolicy,
    opts: { clientCertificates: boolean; secrets?: SecretBox },
  ): Promise<{ before?: AccessPolicyRecord; after: AccessPolicyRecord; replacedUnusable: boolean }> {
    return this.records.serialized(async () => {
      this.tenants.requireTenant(tenant);
      const normalized = validateAccessPolicy(policy, opts);
      // A client secret in the file is never stored as it came: sealed with the operator's keys, or refused.
      for (const rule of normalized.rules) {
        if (!rule.login) continue;
        const envProblem = rule.login.clientSecretEnv === "" ? undefined : loginSecretEnvProblem(rule.login.clientSecretEnv, tenant);
        if (envProblem) throw new FerryError("invalid_argument", "invalid_access_policy", `rule "${rule.name}": ${envProblem}`);
        // A time to come would refuse every session until then, each sign-in included: a loop through the provider.
        const notBefore = rule.login.sessionsNotBefore;
        if (notBefore && timestampMs(notBefore) > Date.now() + 60_000) {
          throw new FerryError("invalid_argument", "invalid_access_policy", `rule "${rule.name}": login.sessionsNotBefore is in the future (sessions end now with \`ferry admin access end-sessions\`)`);
        }
        if (rule.login.clientSecret === "") {
          // A sealed secret is bound to its tenant, issuer and client id: with another of them it would never open.
          if (rule.login.clientSecretSealed !== "" && opts.secrets && !opensHere(opts.secrets, rule.login, tenant)) {
            throw new FerryError(
              "invalid_argument",
              "invalid_access_policy",
              `rule "${rule.name}": login.clientSecretSealed does not open for this tenant, issuer and client id (changed, or sealed with a key this relay does not have): give login.clientSecret again`,
            );
          }
          continue;
        }
        if (!opts.secrets) {
          throw new FerryError(
            "failed_precondition",
            "no_secret_key",
            `rule "${rule.name}": this relay has no secret key (--secret-key-file or FERRY_SECRET_KEY), so it cannot store login.clientSecret; start it with one, or use login.clientSecretEnv`,
          );
        }
        sealLoginSecret(opts.secrets, rule.login, tenant);
      }
      const before = this.records.read(POLICY, tenant);
      keepSessionsEnded(normalized, before?.policy);
      const replacedUnusable = before === undefined && this.records.has(POLICY, tenant);
      const after = create(AccessPolicyRecordSchema, { tenant, policy: normalized, updateTime: timestampNow() });
      if (normalized.rules.length === 0 && normalized.clientCaPem === "") await this.records.remove(POLICY, tenant);
      else await this.records.put(POLICY, tenant, after);
      return { before, after, replacedUnusable };
    });
  }

  /**
   * Ends the sessions of the tenant's login rules (or of the one named) begun
   * until `at`: their sessions_not_before becomes `at`, and that of every other
   * login rule with the same provider and client, since a session is good for
   * all of them (sessionScopeOf). Throws not_found for a tenant without such a
   * rule, failed_precondition for an unusable policy.
   */
  async endLoginSessions(tenant: string, ruleName: string, at: Date): Promise<{ before: AccessPolicyRecord; after: AccessPolicyRecord; rules: string[] }> {
    return this.records.serialized(async () => {
      const before = this.getAccessPolicyRecord(tenant);
      const policy = before?.policy ? clone(AccessPolicySchema, before.policy) : undefined;
      const rules = (policy?.rules ?? []).filter((r) => r.login && (ruleName === "" || r.name === ruleName));
      if (!before || rules.length === 0) {
        const which = ruleName === "" ? "no rule that signs people in (login)" : `no login rule named "${ruleName}"`;
        throw new FerryError("not_found", "login_rule_not_found", `tenant "${tenant}" has ${which}`);
      }
      const clients = new Set(rules.map((r) => clientOf(r.login!)));
      const ended = policy!.rules.filter((r) => r.login && clients.has(clientOf(r.login)));
      for (const rule of ended) rule.login!.sessionsNotBefore = timestampFromDate(at);
      const after = create(AccessPolicyRecordSchema, { tenant, policy, updateTime: timestampNow() });
      await this.records.put(POLICY, tenant, after);
      return { before, after, rules: ended.map((r) => r.name) };
    });
  }

  /** Deletes the tenant's policy, usable or not. Only inside a change of the shared queue (Catalog.deleteTenant). */
  async remove(tenant: string): Promise<void> {
    await this.records.remove(POLICY, tenant);
  }

  private refresh(tenant: string, json: JsonValue | undefined): void {
    if (json === undefined) {
      this.byTenant.delete(tenant);
      return;
    }
    const record = this.records.read(POLICY, tenant, json);
    if (!record) this.byTenant.set(tenant, UNUSABLE_ACCESS_POLICY);
    // A record without a policy is an empty one: public, as if there were none.
    else if (!record.policy) this.byTenant.delete(tenant);
    else this.byTenant.set(tenant, record.policy);
  }
}

/** A login rule's provider and client: what its sessions are bound to, with the tenant and target. */
function clientOf(login: LoginRule): string {
  return `${login.issuer}\0${login.clientId}`;
}

/**
 * A policy set again never brings ended sessions back: each login rule keeps the latest sessions_not_before a
 * stored login rule of the same provider and client had, when the one given is older or missing (a file kept
 * since, or a console page opened before the sessions were ended).
 */
function keepSessionsEnded(policy: AccessPolicy, stored: AccessPolicy | undefined): void {
  const ended = new Map<string, number>();
  for (const { login } of stored?.rules ?? []) {
    if (!login?.sessionsNotBefore) continue;
    const client = clientOf(login);
    ended.set(client, Math.max(ended.get(client) ?? 0, timestampMs(login.sessionsNotBefore)));
  }
  for (const rule of policy.rules) {
    const at = rule.login ? ended.get(clientOf(rule.login)) : undefined;
    const given = rule.login?.sessionsNotBefore;
    if (at !== undefined && (!given || timestampMs(given) < at)) rule.login!.sessionsNotBefore = timestampFromMs(at);
  }
}

function opensHere(secrets: SecretBox, login: LoginRule, tenant: string): boolean {
  try {
    openLoginSecret(secrets, login, tenant, {});
    return true;
  } catch {
    return false;
  }
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
