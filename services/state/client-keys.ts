import { create } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs, timestampNow } from "@bufbuild/protobuf/wkt";
import { type ClientKeyRecord, ClientKeyRecordSchema, type TenantRecord } from "../../gen/ferry/state/v1/state_pb.js";
import { FerryError } from "../../core/errors.js";
import { isDnsLabel } from "../../core/names.js";
import type { ClientKeyCheck } from "../access/access-control.js";
import { mintSecret, sameSecret, secretId, secretMatches } from "../auth/secrets.js";
import { passed, type RecordKind, type StoredRecords } from "./stored-records.js";

/** Targets one key may be limited to. */
const MAX_TARGETS = 100;
/** Valid (not revoked, not expired) client keys one tenant may hold: a tenant token cannot fill the store. */
export const MAX_LIVE_CLIENT_KEYS = 1000;
const MIN_TTL_MS = 1000;
const MAX_TTL_MS = 3650 * 86_400_000;

const CLIENT_KEY: RecordKind<typeof ClientKeyRecordSchema> = {
  prefix: "client-key.",
  schema: ClientKeyRecordSchema,
  check(r, id) {
    if (r.keyId !== id) return "client_key_id_mismatch";
    if (!isDnsLabel(r.tenant)) return "client_key_tenant_invalid";
    if (r.secretSha256.byteLength !== 32) return "client_key_digest_invalid";
    if (r.targets.length > MAX_TARGETS || !r.targets.every(isDnsLabel)) return "client_key_targets_invalid";
    return undefined;
  },
};

// Refusals are the same every time: no allocation for a client that keeps sending a bad key.
const MALFORMED: ClientKeyCheck = Object.freeze({ ok: false, reason: "malformed" });
const UNKNOWN: ClientKeyCheck = Object.freeze({ ok: false, reason: "unknown" });
const REVOKED: ClientKeyCheck = Object.freeze({ ok: false, reason: "revoked" });
const EXPIRED: ClientKeyCheck = Object.freeze({ ok: false, reason: "expired" });

export interface ClientKeyOptions {
  /** Operator's note, at most 200 characters. */
  description?: string;
  /** Targets (DNS labels) the key may reach; empty or unset: every target its rules allow. */
  targets?: readonly string[];
  /** How long the key works (1 s to 3650 days); unset: until revoked. */
  ttlMs?: number;
}

/**
 * Client keys ("apiKey" in an access rule), stored as ClientKeyRecord under
 * "client-key.<keyId>": secrets "fcl_<keyId>_<256 random bits>", only their
 * SHA-256 kept, apart from connector keys ("fck_") so neither ever works as
 * the other. Revoked keys are kept for the audit trail until their tenant goes.
 */
export class ClientKeys {
  /** Per record, the secret that verified against it last, with what its check says (see checkClientKey). */
  private readonly verified = new WeakMap<ClientKeyRecord, { secret: string; check: ClientKeyCheck }>();

  constructor(
    private readonly records: StoredRecords,
    private readonly tenants: { getTenant(name: string): TenantRecord | undefined; requireTenant(name: string): TenantRecord },
  ) {}

  /** Mints a key; the secret is returned here only. Throws invalid_argument naming the field for bad options. */
  async createClientKey(tenant: string, opts: ClientKeyOptions = {}): Promise<{ record: ClientKeyRecord; secret: string }> {
    return this.records.serialized(async () => {
      this.tenants.requireTenant(tenant);
      const description = opts.description ?? "";
      if (description.length > 200) throw invalid("invalid_description", "description is longer than 200 characters");
      const targets = checkTargets(opts.targets ?? []);
      const ttlMs = opts.ttlMs;
      if (ttlMs !== undefined && !(Number.isFinite(ttlMs) && ttlMs >= MIN_TTL_MS && ttlMs <= MAX_TTL_MS)) {
        throw invalid("invalid_ttl", "ttl must be between 1s and 3650d (unset: the key works until revoked)");
      }
      const live = this.listClientKeys(tenant).filter((k) => !k.revokeTime && !passed(k.expireTime)).length;
      if (live >= MAX_LIVE_CLIENT_KEYS) {
        throw new FerryError(
          "failed_precondition",
          "too_many_client_keys",
          `tenant "${tenant}" has ${live} valid client keys, the most it may have: revoke some first`,
        );
      }
      let minted = mintSecret("fcl");
      // 64-bit ids: a repeat is all but impossible, and would overwrite another key.
      while (this.records.has(CLIENT_KEY, minted.id)) minted = mintSecret("fcl");
      const now = Date.now();
      const record = create(ClientKeyRecordSchema, {
        keyId: minted.id,
        tenant,
        secretSha256: minted.sha256,
        description,
        targets,
        createTime: timestampFromMs(now),
        expireTime: ttlMs === undefined ? undefined : timestampFromMs(now + ttlMs),
      });
      await this.records.put(CLIENT_KEY, minted.id, record);
      return { record, secret: minted.secret };
    });
  }

  /** The tenant's keys, revoked and expired ones too, oldest first (never their secrets: only digests are stored). */
  listClientKeys(tenant: string): ClientKeyRecord[] {
    return this.records
      .readAll(CLIENT_KEY)
      .filter((k) => k.tenant === tenant)
      .sort((a, b) => (a.createTime ? timestampMs(a.createTime) : 0) - (b.createTime ? timestampMs(b.createTime) : 0));
  }

  /** A key of this tenant; a key of another tenant is reported as missing (tenants never learn of each other's objects). */
  requireClientKey(tenant: string, keyId: string): ClientKeyRecord {
    const record = this.records.read(CLIENT_KEY, keyId);
    if (!record || record.tenant !== tenant) {
      throw new FerryError("not_found", "client_key_not_found", `tenant "${tenant}" has no client key "${keyId}"`);
    }
    return record;
  }

  /** Revokes a key on every node (they see the change through the store's watch); revoking it again changes nothing. */
  async revokeClientKey(tenant: string, keyId: string): Promise<{ before: ClientKeyRecord; after: ClientKeyRecord }> {
    return this.records.serialized(async () => {
      this.tenants.requireTenant(tenant);
      const before = this.requireClientKey(tenant, keyId);
      if (before.revokeTime) return { before, after: before };
      const after = create(ClientKeyRecordSchema, { ...before, revokeTime: timestampNow() });
      await this.records.put(CLIENT_KEY, keyId, after);
      return { before, after };
    });
  }

  /**
   * Checks a presented client key: from memory, the secret compared in
   * constant time (secretMatches). The caller checks that `tenant` is the
   * request's tenant and the target is in `targets` (when not empty).
   */
  checkClientKey(secret: string): ClientKeyCheck {
    const id = secretId("fcl", secret);
    if (!id) return MALFORMED;
    const key = this.records.read(CLIENT_KEY, id);
    if (!key) return UNKNOWN;
    // A client sends its key with every request: the one that verified last against this record (a changed record
    // is a new object) is compared as it is, in constant time, instead of hashing every time. Anything else is hashed.
    let known = this.verified.get(key);
    if (!known || !sameSecret(secret, known.secret)) {
      if (!secretMatches(secret, key.secretSha256)) return UNKNOWN;
      known = { secret, check: { ok: true, keyId: key.keyId, tenant: key.tenant, targets: key.targets } };
      this.verified.set(key, known);
    }
    if (key.revokeTime) return REVOKED;
    if (passed(key.expireTime)) return EXPIRED;
    // Not for a tenant that is gone (and createTenant clears keys left behind, so a new tenant of the name inherits none).
    if (!this.tenants.getTenant(key.tenant)) return UNKNOWN;
    return known.check;
  }

  /** Deletes every key of the tenant. Only inside a change of the shared queue (Catalog.deleteTenant, createTenant). */
  async removeAll(tenant: string): Promise<void> {
    for (const key of this.listClientKeys(tenant)) await this.records.remove(CLIENT_KEY, key.keyId);
  }
}

function checkTargets(targets: readonly string[]): string[] {
  if (targets.length > MAX_TARGETS) throw invalid("invalid_targets", `targets lists more than ${MAX_TARGETS} targets`);
  const seen = new Set<string>();
  for (const t of targets) {
    if (!isDnsLabel(t)) throw invalid("invalid_targets", `targets entry "${t.slice(0, 100)}" is not a DNS label (a target name)`);
    if (seen.has(t)) throw invalid("invalid_targets", `targets lists "${t}" twice`);
    seen.add(t);
  }
  return [...targets];
}

function invalid(code: string, message: string): FerryError {
  return new FerryError("invalid_argument", code, message);
}
