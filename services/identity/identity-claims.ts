import { randomFillSync } from "node:crypto";
import type { AccessGranted } from "../access/access-control.js";

/** The request header that carries the identity from the relay to the connector and the target. */
export const IDENTITY_HEADER = "x-ferry-identity";

/** The JWS "typ": an identity is never mistaken for an access token, nor one for it. */
export const IDENTITY_TYP = "ferry-identity+jwt";

/** How long an identity is good for, from its signing: long enough for a slow exchange to start, short enough to be worthless later. */
export const IDENTITY_TTL_SECONDS = 60;

/** The claims of X-Ferry-Identity (docs/access.md, "X-Ferry-Identity"). */
export interface IdentityClaims {
  iss: "ferry";
  /** "<target>.<tenant>": an identity for one target is refused by every other. */
  aud: string;
  /** Who: the client key id, the token's sub, the certificate subject, the basic user; the client address for "none". */
  sub: string;
  auth: AccessGranted["method"];
  tenant: string;
  target: string;
  /** The client's address as the relay saw it (X-Forwarded-For only from --trust-proxy). */
  client_address: string;
  /** The rule that applied; absent (left out of the JSON) for a target no rule names. */
  rule?: string;
  /** For "login": what the identity provider said of the person (each absent when it said nothing). */
  email?: string;
  name?: string;
  groups?: string[];
  iat: number;
  exp: number;
  /** 16 random bytes, base64url. */
  jti: string;
}

/** What the gateway knows of the request beyond the policy's word. */
export interface IdentityFacts {
  tenant: string;
  target: string;
  clientAddress: string;
}

/**
 * The identity the relay vouches for after the tenant's policy let a request
 * through. Pure but for the clock and the jti's randomness; no I/O.
 */
export function identityFor(grant: AccessGranted, facts: IdentityFacts, nowMs: number = Date.now()): IdentityClaims {
  const iat = Math.floor(nowMs / 1000);
  return {
    iss: "ferry",
    aud: `${facts.target}.${facts.tenant}`,
    sub: grant.subject,
    auth: grant.method,
    tenant: facts.tenant,
    target: facts.target,
    client_address: facts.clientAddress,
    // undefined is left out by JSON.stringify: no spread (and no second object) per request.
    rule: grant.rule,
    email: grant.profile?.email,
    name: grant.profile?.name,
    groups: grant.profile?.groups,
    iat,
    exp: iat + IDENTITY_TTL_SECONDS,
    jti: newJti(),
  };
}

const JTI_BYTES = 16;
/** Randomness for 256 jtis at a time: one getrandom call instead of one per request. */
const pool = Buffer.allocUnsafe(JTI_BYTES * 256);
let used = pool.length;

function newJti(): string {
  if (used === pool.length) {
    randomFillSync(pool);
    used = 0;
  }
  const jti = pool.toString("base64url", used, used + JTI_BYTES);
  used += JTI_BYTES;
  return jti;
}
