import { hash } from "node:crypto";
import { errors as jose, jwtVerify, type JWTVerifyGetKey, type JWTVerifyOptions } from "jose";
import { setNewest } from "../../core/bounded-map.js";
import { msFromDuration } from "../../core/duration.js";
import { FerryError } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import type { JwtRule } from "../../gen/ferry/access/v1/access_policy_pb.js";
import type { MaybeAsync } from "./access-control.js";
import { claimsMatch } from "./jwt-claims.js";
import { createKeySources, KEY_REFETCH_COOLDOWN_MS, type ProviderMetadata } from "./jwt-key-sources.js";

/**
 * The JWS algorithms a rule may accept: asymmetric only. "none" and HS* never:
 * with HS256 the "secret" would be the provider's public key, which anyone
 * can fetch and sign with.
 */
export const JWT_ALGORITHMS: readonly string[] = [
  "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519",
];
/** What a rule without `algorithms` accepts: what Entra ID, Keycloak, Auth0 and Okta sign with. */
export const DEFAULT_JWT_ALGORITHMS: readonly string[] = ["RS256", "PS256", "ES256", "EdDSA"];
/** Longer tokens are refused before any parsing (real access tokens are 1-4 KiB; request heads allow 16 KiB). */
export const MAX_TOKEN_LENGTH = 16 * 1024;
export const DEFAULT_CLOCK_SKEW_MS = 30_000;
export const MAX_CLOCK_SKEW_MS = 5 * 60_000;
/** OpenID Connect Core 1.0 §2: a sub is at most 255 ASCII characters. */
const MAX_SUBJECT_LENGTH = 255;
/** A token without a kid is tried against at most this many of the provider's keys. */
const MAX_KEY_CANDIDATES = 8;
/** How long a verified token is taken again without checking its signature (never past its exp and the skew). */
const VERIFIED_TOKEN_TTL_MS = 60_000;
const MAX_VERIFIED_TOKENS = 10_000;

export interface JwtVerifierOptions {
  /** Per fetch of a discovery document or JWKS; default 5 s. */
  fetchTimeoutMs?: number;
  /** JWKS URLs (and discovered issuers) kept, least recently used dropped first; default 1000. */
  maxIssuers?: number;
  /** After a fetch, an unknown kid refetches the keys only this much later; default 30 s. */
  refetchCooldownMs?: number;
  /** The clock for exp/nbf and for the caches' own timing. */
  now?: () => number;
  /** Where failing identity providers are reported (rate-limited). Tokens are never logged. */
  log?: Logger;
  /** Verified tokens remembered (by digest), least recently used dropped first; default 10,000, 0: none. */
  maxVerifiedTokens?: number;
}

export interface VerifiedJwt {
  /** The token's sub. */
  subject: string;
  /** The whole verified claims set. */
  claims: Record<string, unknown>;
}

export interface JwtVerifier {
  /**
   * Checks a bearer token against a rule's JwtRule: signature by the issuer's
   * keys, alg, iss, aud, exp/nbf (with the rule's clock skew), sub, then the
   * required claims. A token that verified before for the same rule comes
   * back at once (see `verified` below); any other check is a promise, which
   * rejects with a FerryError whose message is safe for the
   * client: unauthenticated "jwt_expired" | "jwt_invalid", permission_denied
   * "jwt_claims" (a valid token without the right claims), or unavailable
   * "jwt_keys_unavailable" (the provider's keys cannot be had: not the client's fault).
   */
  verify(token: string, rule: JwtRule): MaybeAsync<VerifiedJwt>;
  /** The issuer's discovery document, from the same cache as its keys (jwt-key-sources.ts). */
  metadata(issuer: string): Promise<ProviderMetadata>;
  /** Drops the caches and aborts fetches in flight; verify refuses afterwards. */
  close(): void;
}

export function createJwtVerifier(opts: JwtVerifierOptions = {}): JwtVerifier {
  const now = opts.now ?? Date.now;
  const sources = createKeySources({
    fetchTimeoutMs: opts.fetchTimeoutMs ?? 5_000,
    maxIssuers: opts.maxIssuers ?? 1000,
    refetchCooldownMs: opts.refetchCooldownMs ?? KEY_REFETCH_COOLDOWN_MS,
    now,
    log: opts.log,
  });
  const maxVerified = opts.maxVerifiedTokens ?? MAX_VERIFIED_TOKENS;
  /**
   * Tokens that verified, by SHA-256 digest (never the token itself): a client sends the same token with every
   * request, and checking its signature again is most of what a JWT rule costs (~150 µs). An entry holds only
   * for the same rule object (a changed policy checks every token again) and never past the token's exp.
   */
  const verified = new Map<string, { rule: JwtRule; until: number; result: VerifiedJwt }>();

  const verifyAndRemember = async (token: string, rule: JwtRule, digest: string): Promise<VerifiedJwt> => {
    if (!rule.issuer) throw invalid("the rule names no issuer");
    const algorithms = (rule.algorithms.length ? rule.algorithms : DEFAULT_JWT_ALGORITHMS).filter((a) => JWT_ALGORITHMS.includes(a));
    if (algorithms.length === 0) throw invalid("the rule accepts no usable algorithm");
    const skewMs = Math.max(0, Math.min(MAX_CLOCK_SKEW_MS, msFromDuration(rule.clockSkew) ?? DEFAULT_CLOCK_SKEW_MS));

    let claims: Record<string, unknown>;
    try {
      claims = await verifySigned(token, sources.resolver(rule.issuer, rule.jwksUrl), {
        algorithms,
        issuer: rule.issuer,
        audience: rule.audience,
        clockTolerance: skewMs / 1000,
        currentDate: new Date(now()),
        requiredClaims: ["exp", "sub"],
      });
    } catch (err) {
      throw refusal(err);
    }
    const subject = claims.sub;
    if (typeof subject !== "string" || subject === "" || subject.length > MAX_SUBJECT_LENGTH) throw invalid("its sub is not a usable subject");
    if (!claimsMatch(claims, rule.claims)) {
      throw new FerryError("permission_denied", "jwt_claims", "the bearer token does not carry the claims this target requires");
    }
    const result = { subject, claims };
    if (maxVerified > 0) {
      const until = Math.min(now() + VERIFIED_TOKEN_TTL_MS, (claims.exp as number) * 1000 + skewMs);
      setNewest(verified, digest, { rule, until, result }, maxVerified);
    }
    return result;
  };

  return {
    verify(token, rule) {
      if (token.length > MAX_TOKEN_LENGTH) return Promise.reject(invalid("it is too long"));
      const digest = maxVerified > 0 ? hash("sha256", token, "base64url") : "";
      const known = verified.get(digest);
      if (known !== undefined) {
        // At once, with no promise: behind a JWT rule a client sends the same token with every request.
        if (known.rule === rule && now() < known.until) return known.result;
        verified.delete(digest);
      }
      return verifyAndRemember(token, rule, digest);
    },
    metadata: (issuer) => sources.metadata(issuer),
    close() {
      verified.clear();
      sources.close();
    },
  };
}

/**
 * jose's jwtVerify, and for a token without a kid that several of the
 * provider's keys could have signed (some providers leave it out), each of
 * them in turn, as jose's documentation shows.
 */
async function verifySigned(token: string, keys: JWTVerifyGetKey, options: JWTVerifyOptions): Promise<Record<string, unknown>> {
  try {
    return (await jwtVerify(token, keys, options)).payload;
  } catch (err) {
    if (!(err instanceof jose.JWKSMultipleMatchingKeys)) throw err;
    let last: unknown = err;
    let tried = 0;
    for await (const key of err) {
      if (++tried > MAX_KEY_CANDIDATES) break;
      try {
        return (await jwtVerify(token, key, options)).payload;
      } catch (e) {
        if (!(e instanceof jose.JWSSignatureVerificationFailed)) throw e;
        last = e;
      }
    }
    throw last;
  }
}

const invalid = (why: string) => new FerryError("unauthenticated", "jwt_invalid", `the bearer token is not accepted: ${why}`);

/**
 * jose's failure as the client may hear it: which check failed, in our words,
 * never the token or its claims (jose's errors carry the claims set; they are
 * not kept as a cause, so no log line can print it).
 */
function refusal(err: unknown): FerryError {
  if (err instanceof FerryError) return err;
  if (err instanceof jose.JWTExpired) return new FerryError("unauthenticated", "jwt_expired", "the bearer token has expired");
  if (err instanceof jose.JWTClaimValidationFailed) {
    if (err.reason === "missing") return invalid(`it has no "${err.claim}" claim`);
    switch (err.claim) {
      case "nbf":
        return invalid("it is not valid yet");
      case "iss":
        return invalid("its issuer is not the one this target trusts");
      case "aud":
        return invalid("its audience is not this target");
      default:
        return invalid(`its "${err.claim}" claim is not valid`);
    }
  }
  if (err instanceof jose.JOSEAlgNotAllowed) return invalid("its signing algorithm is not accepted");
  if (err instanceof jose.JWSSignatureVerificationFailed) return invalid("its signature does not verify");
  if (err instanceof jose.JWKSNoMatchingKey) return invalid("it is not signed by a key of the identity provider");
  if (err instanceof jose.JWKSMultipleMatchingKeys) return invalid("it does not say which of the identity provider's keys signed it");
  if (err instanceof jose.JWSInvalid || err instanceof jose.JWTInvalid || err instanceof jose.JOSENotSupported) return invalid("it is not a well-formed signed JWT");
  return invalid("it could not be verified");
}
