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

const ID_PATTERN = /^[a-z0-9]{16}$/;

export function mintSecret(kind: SecretKind): MintedSecret {
  const id = randomBytes(10).toString("hex").slice(0, 16);
  const secret = `${kind}_${id}_${randomBytes(32).toString("base64url")}`;
  return { id, secret, sha256: sha256(secret) };
}

/** The record id embedded in a secret of this kind, or undefined when it is not one. */
export function secretId(kind: SecretKind, secret: string): string | undefined {
  const parts = secret.split("_");
  if (parts.length < 3 || parts[0] !== kind || !ID_PATTERN.test(parts[1]!)) return undefined;
  return parts[1];
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
