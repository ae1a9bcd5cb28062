import { randomBytes } from "node:crypto";
import { create, type DescMessage, fromJson, type JsonValue, type MessageShape, toJson } from "@bufbuild/protobuf";
import { type Timestamp, timestampFromMs, timestampMs, timestampNow } from "@bufbuild/protobuf/wkt";
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
import type { KvChange, KvStore } from "./kv-store.js";
import { applyMask, normalizeSettings, settingsOf, type TenantSettings, validateSettings } from "./tenant-settings.js";

const TENANT = "tenant.";
const KEY = "key.";
const TOKEN = "admin-token.";
const BOOTSTRAP_TOKEN_ID = "bootstrap";

type RecordOf<P extends keyof typeof RECORDS> = Parameters<(typeof RECORDS)[P]["check"]>[0];

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

/**
 * What a stored record must be, beyond decoding, to be used: the KV store is
 * shared (a cluster's bucket can be written by anything with NATS rights, a
 * state file by hand), so a record is checked where it enters like any
 * other input. Each returns why a record is unusable, or undefined.
 */
const RECORDS = {
  [TENANT]: {
    schema: TenantRecordSchema,
    check(r: TenantRecord, id: string): string | undefined {
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
  },
  [KEY]: {
    schema: KeyRecordSchema,
    check(r: KeyRecord, id: string): string | undefined {
      if (r.keyId !== id) return "key_id_mismatch";
      if (!isDnsLabel(r.tenant)) return "key_tenant_invalid";
      if (r.secretSha256.byteLength !== 32) return "key_digest_invalid";
      return undefined;
    },
  },
  [TOKEN]: {
    schema: AdminTokenRecordSchema,
    check(r: AdminTokenRecord, id: string): string | undefined {
      if (r.tokenId !== id) return "token_id_mismatch";
      if (!ROLE_PATTERN.test(r.role)) return "token_role_invalid";
      if (r.secretSha256.byteLength !== 32) return "token_digest_invalid";
      if (!r.createTime) return "token_create_time_missing";
      return undefined;
    },
  },
} as const;

/** A cached verdict on a record that is not usable, so a hostile record costs one decode and one fault, not one per request. */
const UNUSABLE = Symbol("unusable");

/** Whether a timestamp is set and already past. */
function passed(ts: Timestamp | undefined, now = Date.now()): boolean {
  return ts !== undefined && timestampMs(ts) <= now;
}

/**
 * Tenants, connector keys and admin tokens: validation and rules on top of
 * the KvStore. Reads are served from the store's memory, so the hot path
 * (authenticating a tunnel, checking a tenant per request) does no I/O.
 */
export class Catalog {
  /** Decoded records by store key (or UNUSABLE); the gateway checks a tenant on every request. */
  private readonly decoded = new Map<string, unknown>();

  /** Admin changes run one at a time: each reads, checks and writes without another change in between. */
  private writing: Promise<unknown> = Promise.resolve();

  private readonly faults: PeerFaults | undefined;

  /** `faults` counts stored records that cannot be used (source "store"). */
  constructor(
    private readonly store: KvStore,
    deps: { faults?: PeerFaults } = {},
  ) {
    this.faults = deps.faults;
    store.watch((change) => this.decoded.delete(change.key));
  }

  /**
   * Runs an admin change after the previous one. In a cluster another node may
   * change the same record meanwhile; the store then refuses the write
   * ("concurrent_change") and the change runs again on the fresh record.
   */
  private serialized<T>(change: () => Promise<T>): Promise<T> {
    const attempt = async (): Promise<T> => {
      for (let tries = 1; ; tries++) {
        try {
          return await change();
        } catch (err) {
          if (!(err instanceof FerryError && err.code === "concurrent_change") || tries >= 5) throw err;
        }
      }
    };
    const run = this.writing.then(attempt, attempt);
    this.writing = run.catch(() => {});
    return run;
  }

  /** Writes a record; the cache forgets it now and again once written (a read in between may have cached the old one). */
  private async put(key: string, value: JsonValue): Promise<void> {
    this.decoded.delete(key);
    await this.store.put(key, value);
    this.decoded.delete(key);
  }

  private async remove(key: string): Promise<void> {
    this.decoded.delete(key);
    await this.store.delete(key);
    this.decoded.delete(key);
  }

  /**
   * A record decoded and checked once, and cached until its key changes.
   * Treat it as read-only. A record that does not decode or fails its check
   * is as good as absent: skipped, counted, logged (rate-limited by faults).
   * Never throws: this runs on every request and in store watch callbacks.
   */
  private read<P extends keyof typeof RECORDS>(prefix: P, key: string, json?: JsonValue): RecordOf<P> | undefined {
    const hit = this.decoded.get(key);
    if (hit === UNUSABLE) return undefined;
    if (hit) return hit as RecordOf<P>;
    const value = json ?? this.store.get(key);
    if (value === undefined) return undefined;
    const { schema, check } = RECORDS[prefix] as unknown as { schema: DescMessage; check(r: unknown, id: string): string | undefined };
    let record: MessageShape<DescMessage> | undefined;
    let why: string | undefined;
    try {
      // Unknown fields ignored: a newer node in the cluster may have written the record.
      record = fromJson(schema, value, { ignoreUnknownFields: true });
      why = check(record, key.slice(prefix.length));
    } catch {
      why = "record_undecodable";
    }
    if (why !== undefined || record === undefined) {
      this.decoded.set(key, UNUSABLE);
      this.faults?.fault("store", why ?? "record_undecodable", { key: key.slice(0, 100) });
      return undefined;
    }
    this.decoded.set(key, record);
    return record as RecordOf<P>;
  }

  /** The usable records under a prefix, by key. */
  private readAll<P extends keyof typeof RECORDS>(prefix: P): Array<RecordOf<P>> {
    const out: Array<RecordOf<P>> = [];
    for (const [key, json] of this.store.list(prefix)) {
      const record = this.read(prefix, key, json);
      if (record) out.push(record);
    }
    return out;
  }

  // Tenants

  getTenant(name: string): TenantRecord | undefined {
    return this.read(TENANT, TENANT + name);
  }

  requireTenant(name: string): TenantRecord {
    const tenant = this.getTenant(checkDnsLabel("tenant", name));
    if (!tenant) throw new FerryError("not_found", "tenant_not_found", `tenant "${name}" does not exist`);
    return tenant;
  }

  listTenants(): TenantRecord[] {
    return this.readAll(TENANT);
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
      await this.put(TENANT + name, toJson(TenantRecordSchema, record));
      return record;
    });
  }

  /** Changes the settings named by `paths` (update-mask paths); returns the record before and after. */
  async updateTenant(name: string, update: TenantSettings, paths: readonly string[]): Promise<{ before: TenantRecord; after: TenantRecord }> {
    return this.serialized(async () => {
      const before = this.requireTenant(name);
      const after = applyMask(before, update, paths);
      await this.put(TENANT + name, toJson(TenantRecordSchema, after));
      return { before, after };
    });
  }

  /** Deletes the tenant and all its keys. */
  async deleteTenant(name: string): Promise<void> {
    return this.serialized(async () => {
      this.requireTenant(name);
      for (const key of this.listKeys(name)) await this.remove(KEY + key.keyId);
      // Its tenant tokens go too: a new tenant of the same name must not inherit them.
      for (const t of this.listTokens()) {
        if (t.role === `tenant:${name}` && !t.revokeTime) {
          await this.put(TOKEN + t.tokenId, toJson(AdminTokenRecordSchema, create(AdminTokenRecordSchema, { ...t, revokeTime: timestampNow() })));
        }
      }
      await this.remove(TENANT + name);
    });
  }

  // Connector keys

  listKeys(tenant: string): KeyRecord[] {
    return this.readAll(KEY)
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
    await this.put(KEY + minted.id, toJson(KeyRecordSchema, record));
    return { record, secret: minted.secret };
  }

  getKey(keyId: string): KeyRecord | undefined {
    return this.read(KEY, KEY + keyId);
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
      await this.put(KEY + keyId, toJson(KeyRecordSchema, revoked));
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
      await this.put(KEY + keyId, toJson(KeyRecordSchema, updated));
      return { ...next, old: updated };
    });
  }

  /** Checks a presented connector key in constant time. */
  checkConnectorKey(secret: string): KeyCheck {
    const id = secretId("fck", secret);
    if (!id) return { ok: false, reason: "malformed" };
    const key = this.read(KEY, KEY + id);
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
    if (this.store.list(TOKEN).length > 0) return undefined;
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
    return this.readAll(TOKEN)
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
      await this.put(TOKEN + tokenId, toJson(AdminTokenRecordSchema, revoked));
      return revoked;
    });
  }

  /**
   * Translates raw store changes into catalog events. A record that cannot be
   * used counts as gone (fail closed): a tenant's tunnels close, a key's too.
   */
  watch(listener: (event: CatalogEvent) => void): () => void {
    return this.store.watch((change: KvChange) => {
      // The catalog's own watcher (constructor) ran first: the cache no longer holds this key.
      if (change.key.startsWith(TENANT)) {
        const tenant = change.key.slice(TENANT.length);
        const record = change.value === undefined ? undefined : this.read(TENANT, change.key, change.value);
        if (!record) listener({ type: "tenant-deleted", tenant });
        else listener({ type: "tenant-updated", tenant, disabled: record.disabled });
      } else if (change.key.startsWith(KEY)) {
        const key = change.value === undefined ? undefined : this.read(KEY, change.key, change.value);
        if (!key || key.revokeTime) {
          listener({ type: "key-revoked", tenant: key?.tenant ?? "", keyId: change.key.slice(KEY.length) });
        }
      }
    });
  }

  private getToken(id: string): AdminTokenRecord | undefined {
    return this.read(TOKEN, TOKEN + id);
  }

  private async putToken(id: string, digest: Uint8Array, description: string, role = "admin"): Promise<AdminTokenRecord> {
    const record = create(AdminTokenRecordSchema, {
      tokenId: id,
      secretSha256: digest,
      role,
      description,
      createTime: timestampNow(),
    });
    await this.put(TOKEN + id, toJson(AdminTokenRecordSchema, record));
    return record;
  }
}
