import { create } from "@bufbuild/protobuf";
import { type Duration, timestampNow } from "@bufbuild/protobuf/wkt";
import { type TenantRecord, TenantRecordSchema } from "../../gen/ferry/state/v1/state_pb.js";
import { normalizeCertSerial } from "../../core/cert-serial.js";
import { msFromDuration } from "../../core/duration.js";
import { FerryError } from "../../core/errors.js";
import { isDnsLabel } from "../../core/names.js";

/** A tenant's operator-set fields: everything in TenantRecord but its name and times. */
export interface TenantSettings {
  displayName: string;
  description: string;
  disabled: boolean;
  requestTimeout: Duration | undefined;
  maxRequestBodyBytes: bigint;
  maxConcurrentExchanges: number;
  allowedTargets: string[];
  /** Connector client certificates (by serial, canonical: normalizeCertSerial) refused though their CA signed them. */
  deniedCertificateSerials: string[];
}

/** Update-mask paths (proto field names) and the settings field each one sets. */
export const SETTING_PATHS: Record<string, keyof TenantSettings> = {
  display_name: "displayName",
  description: "description",
  disabled: "disabled",
  request_timeout: "requestTimeout",
  max_request_body_bytes: "maxRequestBodyBytes",
  max_concurrent_exchanges: "maxConcurrentExchanges",
  allowed_targets: "allowedTargets",
  denied_certificate_serials: "deniedCertificateSerials",
};

const MAX_TIMEOUT_MS = 3_600_000;
const MAX_CONCURRENT = 100_000;
const MAX_ALLOWED_TARGETS = 1000;
const MAX_DENIED_SERIALS = 1000;

/** Throws invalid_argument naming the field when a setting is out of range. */
export function validateSettings(s: Partial<TenantSettings>): void {
  const bad = (field: string, why: string) => new FerryError("invalid_argument", "invalid_setting", `${field} ${why}`);
  if (s.displayName !== undefined && s.displayName.length > 200) throw bad("display_name", "is longer than 200 characters");
  if (s.description !== undefined && s.description.length > 1000) throw bad("description", "is longer than 1000 characters");
  if (s.requestTimeout !== undefined) {
    const ms = msFromDuration(s.requestTimeout) ?? 0;
    if (s.requestTimeout.seconds < 0n || s.requestTimeout.nanos < 0 || ms < 1 || ms > MAX_TIMEOUT_MS) {
      throw bad("request_timeout", "must be between 1ms and 1h");
    }
  }
  if (s.maxRequestBodyBytes !== undefined && s.maxRequestBodyBytes < 0n) throw bad("max_request_body_bytes", "must not be negative");
  if (s.maxConcurrentExchanges !== undefined && s.maxConcurrentExchanges > MAX_CONCURRENT) {
    throw bad("max_concurrent_exchanges", `must be at most ${MAX_CONCURRENT}`);
  }
  if (s.allowedTargets !== undefined) {
    if (s.allowedTargets.length > MAX_ALLOWED_TARGETS) throw bad("allowed_targets", `lists more than ${MAX_ALLOWED_TARGETS} targets`);
    const seen = new Set<string>();
    for (const t of s.allowedTargets) {
      if (!isDnsLabel(t)) throw bad("allowed_targets", `entry "${t}" is not a DNS label`);
      if (seen.has(t)) throw bad("allowed_targets", `lists "${t}" twice`);
      seen.add(t);
    }
  }
  if (s.deniedCertificateSerials !== undefined) {
    if (s.deniedCertificateSerials.length > MAX_DENIED_SERIALS) {
      throw bad("denied_certificate_serials", `lists more than ${MAX_DENIED_SERIALS} serials`);
    }
    const seen = new Set<string>();
    for (const serial of s.deniedCertificateSerials) {
      if (normalizeCertSerial(serial) !== serial) throw bad("denied_certificate_serials", `entry "${serial.slice(0, 100)}" is not a serial in upper-case hex`);
      if (seen.has(serial)) throw bad("denied_certificate_serials", `lists "${serial}" twice`);
      seen.add(serial);
    }
  }
}

/**
 * Settings as an operator may write them, in their stored form: serials in
 * canonical hex ("0a:1b" becomes "A1B"), given twice kept once. Throws
 * invalid_argument for a serial that is not hex.
 */
export function normalizeSettings<S extends Partial<TenantSettings>>(s: S): S {
  if (s.deniedCertificateSerials === undefined) return s;
  const serials = s.deniedCertificateSerials.map((text) => {
    const serial = normalizeCertSerial(text);
    if (serial === undefined) {
      throw new FerryError("invalid_argument", "invalid_setting", `denied_certificate_serials entry "${text.slice(0, 100)}" is not a certificate serial (hex, at most 20 bytes)`);
    }
    return serial;
  });
  return { ...s, deniedCertificateSerials: [...new Set(serials)] };
}

/** The settings of a record (or the defaults). */
export function settingsOf(r: TenantRecord | undefined): TenantSettings {
  return {
    displayName: r?.displayName ?? "",
    description: r?.description ?? "",
    disabled: r?.disabled ?? false,
    requestTimeout: r?.requestTimeout,
    maxRequestBodyBytes: r?.maxRequestBodyBytes ?? 0n,
    maxConcurrentExchanges: r?.maxConcurrentExchanges ?? 0,
    allowedTargets: [...(r?.allowedTargets ?? [])],
    deniedCertificateSerials: [...(r?.deniedCertificateSerials ?? [])],
  };
}

/**
 * A copy of `record` with the fields named in `paths` taken from `update`.
 * Throws invalid_argument for an empty mask or a path that is not a setting.
 */
export function applyMask(record: TenantRecord, update: TenantSettings, paths: readonly string[]): TenantRecord {
  if (paths.length === 0) {
    throw new FerryError("invalid_argument", "invalid_update_mask", "update_mask is empty: name the fields to change");
  }
  const next = settingsOf(record);
  for (const path of paths) {
    const field = SETTING_PATHS[path];
    if (!field) {
      throw new FerryError(
        "invalid_argument",
        "invalid_update_mask",
        `update_mask path "${path}" is not a tenant setting (one of ${Object.keys(SETTING_PATHS).join(", ")})`,
      );
    }
    (next as unknown as Record<string, unknown>)[field] = update[field];
  }
  const normalized = normalizeSettings(next);
  validateSettings(normalized);
  return create(TenantRecordSchema, {
    ...normalized,
    name: record.name,
    tenantId: record.tenantId,
    createTime: record.createTime,
    updateTime: timestampNow(),
  });
}
