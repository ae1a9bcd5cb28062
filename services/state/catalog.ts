import { randomBytes } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs, timestampNow } from "@bufbuild/protobuf/wkt";
import {
  type AdminTokenRecord,
  AdminTokenRecordSchema,
  type KeyRecord,
  KeyRecordSchema,
  type TenantRecord,
  TenantRecordSchema,
} from "../../gen/ferry/state/v1/state_pb.js";
import { FerryError } from "../../core/errors.js";
import { checkDnsLabel, isDnsLabel } from "../../core/names.js";
import { type MintedSecret, mintSecret, secretId, secretMatches, sha256 } from "../auth/secrets.js";
import { weakTokenReason } from "../auth/token-entropy.js";
import type { PeerFaults } from "../limits/peer-faults.js";
import { AccessPolicies } from "./access-policies.js";
import { ClientKeys } from "./client-keys.js";
import type { KvChange, KvStore } from "./kv-store.js";
import { passed, type RecordKind, StoredRecords } from "./stored-records.js";
import { applyMask, normalizeSettings, settingsOf, type TenantSettings, validateSettings } from "./tenant-settings.js";

const BOOTSTRAP_TOKEN_ID = "bootstrap";

/** What changed, for parts that must react (close tunnels of a revoked key...). */
export type CatalogEvent =
  | { type: "tenant-deleted"; tenant: string }
  | { type: "tenant-updated"; tenant: string; disabled: boolean }
  | { type: "key-revoked"; tenant: string; keyId: string };

export type KeyCheck = { ok: true; key: KeyRecord } | { ok: false; reason: "malformed" | "unknown" | "revoked" | "expired" };

/** Roles of admin tokens: everything, read only, or one tenant's objects. */
export const ROLE_PATTERN = /^(admin|viewer|tenant:[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)$/;

/** A tenant id: 128 random bits in hex. */
const TENANT_ID_PATTERN = /^[0-9a-f]{32}$/;

/** Stored records, each checked where it enters (stored-records.ts) with why it is unusable, or undefined. */
const TENANT: RecordKind<typeof TenantRecordSchema> = {
  prefix: "tenant.",
  schema: TenantRecordSchema,
  check(r, id) {
    if (r.name !== id) return "tenant_name_mismatch";
    if (!isDnsLabel(r.name)) return "tenant_name_invalid";
    if (r.tenantId !== "" && !TENANT_ID_PATTERN.test(r.tenantId)) return "tenant_id_invalid";
    try {
      validateSettings(settingsOf(r));
    } catch {
      return "tenant_setting_out_of_range";
    }
    return undefined;
  },
};

const KEY: RecordKind<typeof KeyRecordSchema> = {
  prefix: "key.",
  schema: KeyRecordSchema,
  check(r, id) {
    if (r.keyId !== id) return "key_id_mismatch";
    if (!isDnsLabel(r.tenant)) return "key_tenant_invalid";
    if (r.secretSha256.byteLength !== 32) return "key_digest_invalid";
    return undefined;
  },
};

const TOKEN: RecordKind<typeof AdminTokenRecordSchema> = {
  prefix: "admin-token.",
  schema: AdminTokenRecordSchema,
  check(r, id) {
    if (r.tokenId !== id) return "token_id_mismatch";
    if (!ROLE_PATTERN.test(r.role)) return "token_role_invalid";
    if (r.secretSha256.byteLength !== 32) return "token_digest_invalid";
    if (!r.createTime) return "token_create_time_missing";
    return undefined;
  },
};

/**
 * Tenants, connector keys and admin tokens: validation and rules on top of
 * the KvStore. Reads are served from the store's memory, so the hot path
 * (authenticating a tunnel, checking a tenant per request) does no I/O.
 * A tenant's client access policy and its client keys live beside it
 * (`accessPolicies`, `clientKeys`), in the same store and the same queue of changes.
 */
export class Catalog {
  private readonly records: StoredRecords;
  /** Client access policies, one per tenant (access-policies.ts). */
  readonly accessPolicies: AccessPolicies;
  /** Client keys, the "apiKey" credential of access rules (client-keys.ts). */
  readonly clientKeys: ClientKeys;

  /** `faults` counts stored records that cannot be used (source "store"). */
  constructor(
    private readonly store: KvStore,
    deps: { faults?: PeerFaults } = {},
  ) {
    this.records = new StoredRecords(store, deps.faults);
    this.accessPolicies = new AccessPolicies(this.records, this);
    this.clientKeys = new ClientKeys(this.records, this);
  }

  private serialized<T>(change: () => Promise<T>): Promise<T> {
    return this.records.serialized(change);
  }

  // Tenants

  getTenant(name: string): TenantRecord | undefined {
    return this.records.read(TENANT, name);
  }

  requireTenant(name: string): TenantRecord {
    const tenant = this.getTenant(checkDnsLabel("tenant", name));
    if (!tenant) throw new FerryError("not_found", "tenant_not_found", `tenant "${name}" does not exist`);
    return tenant;
  }

  listTenants(): TenantRecord[] {
    return this.records.readAll(TENANT);
  }

  async createTenant(name: string, settings: Partial<TenantSettings> = {}): Promise<TenantRecord> {
    return this.serialized(async () => {
      checkDnsLabel("tenant", name);
      const normalized = normalizeSettings(settings);
      validateSettings(normalized);
      if (this.getTenant(name)) throw new FerryError("already_exists", "tenant_exists", `tenant "${name}" already exists`);
      const now = timestampNow();
      // A new id every time: a tenant created later under this name is another tenant (its audit trail starts empty).
      const tenantId = randomBytes(16).toString("hex");
      const record = create(TenantRecordSchema, { ...settingsOf(undefined), ...normalized, name, tenantId, createTime: now, updateTime: now });
      // Left over by a deletion cut short (or by a node that predates them): a new tenant starts without
      // the old one's client keys and policy.
      await this.clientKeys.removeAll(name);
      await this.accessPolicies.remove(name);
      await this.records.put(TENANT, name, record);
      return record;
    });
  }

  /** Changes the settings named by `paths` (update-mask paths); returns the record before and after. */
  async updateTenant(name: string, update: TenantSettings, paths: readonly string[]): Promise<{ before: TenantRecord; after: TenantRecord }> {
    return this.serialized(async () => {
      const before = this.requireTenant(name);
      const after = applyMask(before, update, paths);
      await this.records.put(TENANT, name, after);
      return { before, after };
    });
  }

  /**
   * Deletes the tenant with its connector keys, client keys and access
   * policy, and revokes its tenant tokens. The policy goes last, after the
   * tenant: never is there a moment when the tenant serves without it.
   */
  async deleteTenant(name: string): Promise<void> {
    return this.serialized(async () => {
      this.requireTenant(name);
      for (const key of this.listKeys(name)) await this.records.remove(KEY, key.keyId);
      await this.clientKeys.removeAll(name);
      // Its tenant tokens go too: a new tenant of the same name must not inherit them.
      for (const t of this.listTokens()) {
        if (t.role === `tenant:${name}` && !t.revokeTime) {
          await this.records.put(TOKEN, t.tokenId, create(AdminTokenRecordSchema, { ...t, revokeTime: timestampNow() }));
        }
      }
      await this.records.remove(TENANT, name);
      await this.accessPolicies.remove(name);
    });
  }

  // Connector keys

  listKeys(tenant: string): KeyRecord[] {
    return this.records.readAll(KEY)
      .filter((k) => k.tenant === tenant)
      .sort((a, b) => Number(a.createTime?.seconds ?? 0n) - Number(b.createTime?.seconds ?? 0n));
  }

  async createKey(tenant: string, description = ""): Promise<{ record: KeyRecord; secret: string }> {
    this.requireTenant(tenant);
    if (description.length > 200) {
      throw new FerryError("invalid_argument", "invalid_description", "description is longer than 200 characters");
    }
    const minted: MintedSecret = mintSecret("fck");
    const record = create(KeyRecordSchema, {
      keyId: minted.id,
      tenant,
      secretSha256: minted.sha256,
      description,
      createTime: timestampNow(),
    });
    await this.records.put(KEY, minted.id, record);
    return { record, secret: minted.secret };
  }

  getKey(keyId: string): KeyRecord | undefined {
    return this.records.read(KEY, keyId);
  }

  /** A key of this tenant; a key of another tenant is reported as missing (tenants never learn of each other's objects). */
  requireKey(tenant: string, keyId: string): KeyRecord {
    const record = this.getKey(keyId);
    if (!record || record.tenant !== tenant) {
      throw new FerryError("not_found", "key_not_found", `tenant "${tenant}" has no key "${keyId}"`);
    }
    return record;
  }

  async revokeKey(tenant: string, keyId: string): Promise<KeyRecord> {
    return this.serialized(async () => {
      const record = this.requireKey(tenant, keyId);
      if (record.revokeTime) return record;
      const revoked = create(KeyRecordSchema, { ...record, revokeTime: timestampNow() });
      await this.records.put(KEY, keyId, revoked);
      return revoked;
    });
  }

  /**
   * Mints a successor for a key. The old key keeps working for `graceMs`
   * (0 revokes it at once), so connectors can be moved to the new key without a gap.
   */
  async rotateKey(
    tenant: string,
    keyId: string,
    graceMs: number,
    description?: string,
  ): Promise<{ record: KeyRecord; secret: string; old: KeyRecord }> {
    return this.serialized(async () => {
      const old = this.requireKey(tenant, keyId);
      if (old.revokeTime || passed(old.expireTime)) {
        throw new FerryError("failed_precondition", "key_not_valid", `key "${keyId}" is already revoked or expired`);
      }
      if (old.replacedBy) {
        // Rotating it again would mint a second successor and stretch the old key's grace without end.
        throw new FerryError("failed_precondition", "key_rotated", `key "${keyId}" was already rotated to "${old.replacedBy}": rotate that one`);
      }
      if (graceMs < 0 || graceMs > 365 * 86_400_000) {
        throw new FerryError("invalid_argument", "invalid_grace", "grace must be between 0 and 365 days");
      }
      const next = await this.createKey(tenant, description ?? old.description);
      const updated = create(KeyRecordSchema, {
        ...old,
        replacedBy: next.record.keyId,
        ...(graceMs === 0 ? { revokeTime: timestampNow() } : { expireTime: timestampFromMs(Date.now() + graceMs) }),
      });
      await this.records.put(KEY, keyId, updated);
      return { ...next, old: updated };
    });
  }

  /** Checks a presented connector key in constant time. */
  checkConnectorKey(secret: string): KeyCheck {
    const id = secretId("fck", secret);
    if (!id) return { ok: false, reason: "malformed" };
    const key = this.records.read(KEY, id);
    if (!key) return { ok: false, reason: "unknown" };
    if (!secretMatches(secret, key.secretSha256)) return { ok: false, reason: "unknown" };
    if (key.revokeTime) return { ok: false, reason: "revoked" };
    if (passed(key.expireTime)) return { ok: false, reason: "expired" };
    if (!this.getTenant(key.tenant)) return { ok: false, reason: "unknown" };
    return { ok: true, key };
  }

  // Admin tokens

  /**
   * Makes sure an admin can get in. With `envToken` (FERRY_ADMIN_TOKEN) that
   * token becomes the bootstrap token; otherwise, on the very first start, a
   * token is minted and returned so the caller can show it once.
   */
  async bootstrapAdmin(envToken: string | undefined): Promise<string | undefined> {
    // Serialized: in a cluster, nodes starting together race for the same record.
    return this.serialized(async () => {
    if (envToken !== undefined) {
      const weak = weakTokenReason(envToken);
      if (weak) throw new FerryError("invalid_argument", "weak_admin_token", `FERRY_ADMIN_TOKEN ${weak}`);
      const existing = this.getToken(BOOTSTRAP_TOKEN_ID);
      if (!existing || !secretMatches(envToken, existing.secretSha256)) {
        await this.putToken(BOOTSTRAP_TOKEN_ID, sha256(envToken), "bootstrap token from FERRY_ADMIN_TOKEN");
      }
      return undefined;
    }
    if (this.store.list(TOKEN.prefix).length > 0) return undefined;
    const minted = mintSecret("fat");
    await this.putToken(minted.id, minted.sha256, "minted at first start");
    return minted.secret;
    });
  }

  /** The valid token record matching a presented admin token, compared in constant time. */
  checkAdminToken(token: string): AdminTokenRecord | undefined {
    const candidate = this.getToken(secretId("fat", token) ?? BOOTSTRAP_TOKEN_ID);
    if (candidate && secretMatches(token, candidate.secretSha256) && !candidate.revokeTime) return candidate;
    return undefined;
  }

  listTokens(): AdminTokenRecord[] {
    return this.records.readAll(TOKEN)
      .sort((a, b) => timestampMs(a.createTime!) - timestampMs(b.createTime!));
  }

  async createToken(role: string, description = ""): Promise<{ record: AdminTokenRecord; secret: string }> {
    return this.serialized(async () => {
      if (!ROLE_PATTERN.test(role)) {
        throw new FerryError("invalid_argument", "invalid_role", `role "${role}" is not "admin", "viewer" or "tenant:<name>"`);
      }
      if (role.startsWith("tenant:")) this.requireTenant(role.slice("tenant:".length));
      if (description.length > 200) throw new FerryError("invalid_argument", "invalid_description", "description is longer than 200 characters");
      const minted = mintSecret("fat");
      const record = await this.putToken(minted.id, minted.sha256, description, role);
      return { record, secret: minted.secret };
    });
  }

  /** Revokes a token at once; the last valid admin token cannot go (that would lock every operator out). */
  async revokeToken(tokenId: string): Promise<AdminTokenRecord> {
    return this.serialized(async () => {
      const record = this.getToken(tokenId);
      if (!record) throw new FerryError("not_found", "token_not_found", `there is no admin token "${tokenId}"`);
      if (record.revokeTime) return record;
      const admins = this.listTokens().filter((t) => t.role === "admin" && !t.revokeTime);
      if (record.role === "admin" && admins.length <= 1) {
        throw new FerryError("failed_precondition", "last_admin_token", "this is the last admin token; create another before revoking it");
      }
      const revoked = create(AdminTokenRecordSchema, { ...record, revokeTime: timestampNow() });
      await this.records.put(TOKEN, tokenId, revoked);
      return revoked;
    });
  }

  /**
   * Translates raw store changes into catalog events. A record that cannot be
   * used counts as gone (fail closed): a tenant's tunnels close, a key's too.
   */
  watch(listener: (event: CatalogEvent) => void): () => void {
    return this.store.watch((change: KvChange) => {
      // The records' own watcher (constructor) ran first: the cache no longer holds this key.
      if (change.key.startsWith(TENANT.prefix)) {
        const tenant = change.key.slice(TENANT.prefix.length);
        const record = change.value === undefined ? undefined : this.records.read(TENANT, tenant, change.value);
        if (!record) listener({ type: "tenant-deleted", tenant });
        else listener({ type: "tenant-updated", tenant, disabled: record.disabled });
      } else if (change.key.startsWith(KEY.prefix)) {
        const keyId = change.key.slice(KEY.prefix.length);
        const key = change.value === undefined ? undefined : this.records.read(KEY, keyId, change.value);
        if (!key || key.revokeTime) listener({ type: "key-revoked", tenant: key?.tenant ?? "", keyId });
      }
    });
  }

  private getToken(id: string): AdminTokenRecord | undefined {
    return this.records.read(TOKEN, id);
  }

  private async putToken(id: string, digest: Uint8Array, description: string, role = "admin"): Promise<AdminTokenRecord> {
    const record = create(AdminTokenRecordSchema, {
      tokenId: id,
      secretSha256: digest,
      role,
      description,
      createTime: timestampNow(),
    });
    await this.records.put(TOKEN, id, record);
    return record;
  }
}
