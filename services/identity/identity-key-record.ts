import { createHash, createPublicKey } from "node:crypto";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { IdentityKeyRecordSchema } from "../../gen/ferry/state/v1/state_pb.js";
import type { RecordKind } from "../state/stored-records.js";

/** The public half of an ES256 key, as it is stored and published (members in the order RFC 7638 hashes them). */
export interface PublicEcJwk {
  crv: "P-256";
  kty: "EC";
  x: string;
  y: string;
}

/** A P-256 coordinate: 32 bytes, base64url without padding. */
const COORDINATE = /^[A-Za-z0-9_-]{43}$/;
/** A SHA-256 thumbprint, base64url: safe as a store key and a JWK kid. */
const KID = /^[A-Za-z0-9_-]{43}$/;
/** JWK members that hold a private key (RFC 7518 §6.2.2, §6.3.2, §6.4): never published, whoever wrote them. */
const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
/**
 * A key's whole published life: it signs for at most 30 days (createIdentityKeys' limit), is published ahead
 * and kept 10 minutes after; a record claiming more (one never swept) is not ours.
 */
const MAX_LIFE_MS = 32 * 86_400_000;

/** The RFC 7638 thumbprint of the key: its kid, so a kid names exactly one key. */
export function jwkThumbprint(jwk: PublicEcJwk): string {
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  return createHash("sha256").update(canonical).digest("base64url");
}

/** The stored JSON text as a public P-256 JWK, or why it is not one. */
export function parsePublicJwk(text: string): PublicEcJwk | string {
  if (text.length > 1000) return "identity_key_jwk_invalid";
  let jwk: unknown;
  try {
    jwk = JSON.parse(text);
  } catch {
    return "identity_key_jwk_invalid";
  }
  if (typeof jwk !== "object" || jwk === null || Array.isArray(jwk)) return "identity_key_jwk_invalid";
  const j = jwk as Record<string, unknown>;
  if (PRIVATE_MEMBERS.some((m) => m in j)) return "identity_key_private";
  if (j.kty !== "EC" || j.crv !== "P-256" || typeof j.x !== "string" || typeof j.y !== "string" || !COORDINATE.test(j.x) || !COORDINATE.test(j.y)) {
    return "identity_key_jwk_invalid";
  }
  const key: PublicEcJwk = { crv: "P-256", kty: "EC", x: j.x, y: j.y };
  try {
    // A point off the curve would make every verifier throw on the whole key set.
    createPublicKey({ key: { ...key }, format: "jwk" });
  } catch {
    return "identity_key_jwk_invalid";
  }
  return key;
}

/**
 * IdentityKeyRecord under "identity-key.<kid>". Anything with write access to
 * the store (a cluster's bucket, a state file) can put records here, so each
 * is checked once where it is read (stored-records.ts): a bad one is skipped
 * and counted, and never reaches the JWKS.
 */
export const IDENTITY_KEY: RecordKind<typeof IdentityKeyRecordSchema> = {
  prefix: "identity-key.",
  schema: IdentityKeyRecordSchema,
  check(r, id) {
    if (r.kid !== id || !KID.test(r.kid)) return "identity_key_kid_mismatch";
    if (r.nodeId === "" || r.nodeId.length > 100) return "identity_key_node_invalid";
    const jwk = parsePublicJwk(r.publicJwk);
    if (typeof jwk === "string") return jwk;
    if (jwkThumbprint(jwk) !== r.kid) return "identity_key_kid_mismatch";
    if (!r.createTime || !r.signUntil || !r.expireTime) return "identity_key_times_invalid";
    const created = timestampMs(r.createTime);
    const expires = timestampMs(r.expireTime);
    if (timestampMs(r.signUntil) > expires || expires < created || expires - created > MAX_LIFE_MS) return "identity_key_times_invalid";
    return undefined;
  },
};
