import { setNewest } from "../../core/bounded-map.js";
import type { AccessGranted } from "../access/access-control.js";
import { type IdentityFacts, identityFor, IDENTITY_TTL_SECONDS } from "./identity-claims.js";
import type { IdentitySigner } from "./identity-keys.js";

/** Identities kept for reuse; the clients heard from last stay. */
const MAX_KEPT = 1024;
/** Given again only while at least this much of its life is left: a slow exchange still starts well within it. */
const MIN_LEFT_SECONDS = IDENTITY_TTL_SECONDS / 2;

export interface IdentityIssuer {
  /** The X-Ferry-Identity value for a request the policy let through. Throws identity_unavailable when none can be signed. */
  issue(grant: AccessGranted, facts: IdentityFacts): string;
}

/**
 * Signs identities, and gives the same one again to the same client for the
 * same target and rule while it has at least half its life left. An ES256
 * signature costs ~40 µs of CPU, about half of what the relay spends on a
 * small request; a client making many requests gets one a few times a
 * minute instead. The identity says the same either way (who, how, from
 * where, for what); its `jti` names the identity, not the request, so a
 * target must not take it for a per-request nonce (docs/access.md).
 */
export function createIdentityIssuer(signer: IdentitySigner, opts: { now?: () => number; max?: number } = {}): IdentityIssuer {
  const now = opts.now ?? Date.now;
  const max = opts.max ?? MAX_KEPT;
  const kept = new Map<string, { token: string; exp: number }>();
  return {
    issue(grant, facts) {
      const nowMs = now();
      // NUL cannot occur in any part (names are DNS labels, the rest header-safe text): no two tuples share a key.
      // A person's profile can change between two sessions of the same subject (a new group): part of the key.
      const profile = grant.profile ? `\0${JSON.stringify(grant.profile)}` : "";
      const key = `${facts.tenant}\0${facts.target}\0${grant.rule ?? ""}\0${grant.method}\0${grant.subject}\0${facts.clientAddress}${profile}`;
      const hit = kept.get(key);
      if (hit && hit.exp - nowMs / 1000 >= MIN_LEFT_SECONDS) return hit.token;
      const claims = identityFor(grant, facts, nowMs);
      const token = signer.sign(claims);
      setNewest(kept, key, { token, exp: claims.exp }, max);
      return token;
    },
  };
}
