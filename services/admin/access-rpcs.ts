import { createHash } from "node:crypto";
import { create, type JsonObject, toJson } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { SecretBox } from "../auth/secret-box.js";
import { type AccessPolicy, AccessPolicySchema } from "../../gen/ferry/access/v1/access_policy_pb.js";
import { type AdminService, type ClientKey, ClientKeySchema } from "../../gen/ferry/admin/v1/admin_service_pb.js";
import type { ClientKeyRecord } from "../../gen/ferry/state/v1/state_pb.js";
import { msFromDuration } from "../../core/duration.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { Catalog } from "../state/catalog.js";

type AccessRpcs = Pick<
  ServiceImpl<typeof AdminService>,
  "getAccessPolicy" | "setAccessPolicy" | "endLoginSessions" | "createClientKey" | "listClientKeys" | "revokeClientKey"
>;

export interface AccessRpcDeps {
  catalog: Catalog;
  audit: AuditLog;
  /**
   * Whether this node's TLS listener asks clients for certificates (--client-certificates): an access rule
   * that accepts only mtls cannot match otherwise, so SetAccessPolicy refuses one (validateAccessPolicy's `tls`).
   */
  clientCertificates: boolean;
  /** The operator's secret keys: a login rule's client secret is sealed with them before it is stored. */
  secrets?: SecretBox;
}

/**
 * The admin RPCs of client access: a tenant's policy and its client keys.
 * Roles as for connector keys (admin-auth.ts); each change audited with its
 * actor and before/after, never a secret.
 */
export function accessRpcs(deps: AccessRpcDeps, actor: (ctx: HandlerContext) => string): AccessRpcs {
  const { catalog, audit } = deps;
  return {
    async getAccessPolicy(req) {
      const record = catalog.accessPolicies.getAccessPolicyRecord(req.tenant);
      return { policy: record?.policy ?? create(AccessPolicySchema), updateTime: record?.updateTime };
    },

    async setAccessPolicy(req, ctx) {
      const policy = req.policy ?? create(AccessPolicySchema);
      const { before, after, replacedUnusable } = await catalog.accessPolicies.setAccessPolicy(req.tenant, policy, { clientCertificates: deps.clientCertificates, ...(deps.secrets ? { secrets: deps.secrets } : {}) });
      const empty = after.policy!.rules.length === 0 && after.policy!.clientCaPem === "";
      audit.record({
        action: "access.set",
        actor: actor(ctx),
        tenant: req.tenant,
        details: { rules: after.policy!.rules.length, ...(empty ? { removed: true } : {}), ...(replacedUnusable ? { replacedUnusable: true } : {}) },
        before: before?.policy ? policyForAudit(before.policy) : undefined,
        after: policyForAudit(after.policy!),
      });
      return { policy: after.policy, updateTime: after.updateTime };
    },

    async endLoginSessions(req, ctx) {
      const { before, after, rules } = await catalog.accessPolicies.endLoginSessions(req.tenant, req.rule, new Date());
      audit.record({
        action: "access.end-sessions",
        actor: actor(ctx),
        tenant: req.tenant,
        details: { rules },
        before: policyForAudit(before.policy!),
        after: policyForAudit(after.policy!),
      });
      return { policy: after.policy, updateTime: after.updateTime, rules };
    },

    async createClientKey(req, ctx) {
      const { record, secret } = await catalog.clientKeys.createClientKey(req.tenant, {
        description: req.description,
        targets: req.targets,
        ttlMs: req.ttl ? msFromDuration(req.ttl) : undefined,
      });
      audit.record({ action: "client-key.create", actor: actor(ctx), tenant: req.tenant, details: { keyId: record.keyId }, after: json(clientKeyOf(record)) });
      return { key: clientKeyOf(record), secret };
    },

    async listClientKeys(req) {
      catalog.requireTenant(req.tenant);
      return { keys: catalog.clientKeys.listClientKeys(req.tenant).map(clientKeyOf) };
    },

    async revokeClientKey(req, ctx) {
      const { before, after } = await catalog.clientKeys.revokeClientKey(req.tenant, req.keyId);
      audit.record({
        action: "client-key.revoke",
        actor: actor(ctx),
        tenant: req.tenant,
        details: { keyId: req.keyId },
        before: json(clientKeyOf(before)),
        after: json(clientKeyOf(after)),
      });
      return { key: clientKeyOf(after) };
    },
  };
}

function clientKeyOf(record: ClientKeyRecord): ClientKey {
  return create(ClientKeySchema, {
    tenant: record.tenant,
    keyId: record.keyId,
    description: record.description,
    createTime: record.createTime,
    revokeTime: record.revokeTime,
    expireTime: record.expireTime,
    targets: record.targets,
  });
}

function json(key: ClientKey): Record<string, unknown> {
  return toJson(ClientKeySchema, key) as JsonObject;
}

/**
 * The policy as proto JSON for the audit trail, with each basic user's
 * password hash replaced by a fingerprint of it: the trail is kept for weeks,
 * mirrored to the log and read by tenant tokens, and a salted hash can still
 * be attacked offline. The fingerprint shows that a password changed.
 */
export function policyForAudit(policy: AccessPolicy): Record<string, unknown> {
  const out = toJson(AccessPolicySchema, policy) as JsonObject;
  for (const rule of (out.rules ?? []) as JsonObject[]) {
    const login = rule.login as JsonObject | undefined;
    if (typeof login?.clientSecretSealed === "string") login.clientSecretSealed = fingerprint(login.clientSecretSealed);
    for (const user of (rule.basicUsers ?? []) as JsonObject[]) {
      if (typeof user.passwordHash === "string") {
        user.passwordHash = fingerprint(user.passwordHash);
      }
    }
  }
  return out;
}

function fingerprint(text: string): string {
  return `sha256:${createHash("sha256").update(text).digest("hex").slice(0, 12)}`;
}
