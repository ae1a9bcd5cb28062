import { hash, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * Secrets are 256 random bits with their record id embedded, e.g.
 * "fck_<keyId>_<secret>": the id gives an O(1) lookup, the prefix lets secret
 * scanners recognise a leaked key, and only a SHA-256 digest is ever stored
 * (a slow password hash buys nothing for 256-bit random secrets).
 */
export type SecretKind = "fck" | "fat" | "fcl";

export interface MintedSecret {
  id: string;
  secret: string;
  sha256: Uint8Array;
}

const ID_LENGTH = 16;
const UNDERSCORE = 0x5f;

export function mintSecret(kind: SecretKind): MintedSecret {
  const id = randomBytes(10).toString("hex").slice(0, 16);
  const secret = `${kind}_${id}_${randomBytes(32).toString("base64url")}`;
  return { id, secret, sha256: sha256(secret) };
}

/** The record id embedded in a secret of this kind, or undefined when it is not one. */
export function secretId(kind: SecretKind, secret: string): string | undefined {
  // "<kind>_<16 of a-z0-9>_...": by position, with no split or regex (behind a policy, every request asks).
  const end = kind.length + 1 + ID_LENGTH;
  if (secret.length <= end || secret.charCodeAt(end) !== UNDERSCORE || !secret.startsWith(kind) || secret.charCodeAt(kind.length) !== UNDERSCORE) return undefined;
  for (let i = kind.length + 1; i < end; i++) {
    const c = secret.charCodeAt(i);
    if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39))) return undefined;
  }
  return secret.slice(kind.length + 1, end);
}

export function sha256(text: string): Uint8Array {
  // One-shot: no Hash object per call (client keys are checked on every request behind a policy).
  return hash("sha256", text, "buffer");
}

/** Compares a presented secret with a stored digest in constant time. */
export function secretMatches(secret: string, digest: Uint8Array): boolean {
  const presented = sha256(secret);
  return digest.byteLength === presented.byteLength && timingSafeEqual(presented, digest);
}

/**
 * Whether two strings are equal, in time that depends on their lengths only
 * (never on where they differ): for comparing a presented secret with one
 * that verified before, without hashing it again.
 */
export function sameSecret(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}
