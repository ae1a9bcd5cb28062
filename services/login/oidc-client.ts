import { create } from "@bufbuild/protobuf";
import { JwtRuleSchema, type JwtRule } from "../../gen/ferry/access/v1/access_policy_pb.js";
import { setNewest } from "../../core/bounded-map.js";
import { durationFromMs } from "../../core/duration.js";
import { FerryError } from "../../core/errors.js";
import { postIdpForm } from "../access/jwt-fetch.js";
import { DEFAULT_CLOCK_SKEW_MS, DEFAULT_JWT_ALGORITHMS, type JwtVerifier } from "../access/jwt-verifier.js";
import type { CompiledLogin } from "../access/login-session.js";

/** What the relay needs of a provider's discovery document to sign people in. */
export interface ProviderEndpoints {
  authorization: string;
  token: string;
  /** RP-initiated logout, when the provider offers it. */
  endSession?: string;
}

export interface OidcClient {
  /** The provider's endpoints, from discovery (cached). Rejects with unavailable "login_provider_unavailable". */
  endpoints(issuer: string): Promise<ProviderEndpoints>;
  /**
   * Redeems an authorization code (client_secret_basic, PKCE verifier) and verifies the ID token it brings:
   * signature by the issuer's keys, iss, aud = client id, exp, and the nonce. Resolves with its claims;
   * rejects with unauthenticated "code_refused" (the provider refused the code) or "login_failed" (the ID token is
   * not good), or unavailable ("login_provider_unavailable", "login_misconfigured"); messages safe to show.
   */
  redeem(login: CompiledLogin, code: string, redirectUri: string, verifier: string, nonce: string): Promise<Record<string, unknown>>;
  close(): void;
}

const MAX_ISSUERS = 1000;
const FETCH_TIMEOUT_MS = 5000;

/**
 * The relay as an OpenID Connect relying party: discovery from the JWT
 * verifier's cache, the token endpoint over the same capped, redirect-free
 * fetch, the ID token through the same verifier as bearer tokens (the
 * provider's document and keys are fetched and cached once for both).
 */
export function createOidcClient(jwt: JwtVerifier): OidcClient {
  const rules = new Map<string, JwtRule>();
  const closing = new AbortController();
  const signal = () => AbortSignal.any([AbortSignal.timeout(FETCH_TIMEOUT_MS), closing.signal]);

  // Discovery from the verifier's cache (it needs the same document for the keys), with its back-off.
  const endpoints = async (issuer: string): Promise<ProviderEndpoints> => {
    let metadata;
    try {
      metadata = await jwt.metadata(issuer);
    } catch (err) {
      throw providerUnavailable(err);
    }
    const { authorizationEndpoint: authorization, tokenEndpoint: token, endSessionEndpoint: endSession } = metadata;
    if (!authorization || !token) throw providerUnavailable(new Error(`${issuer}: its discovery document has no usable authorization or token endpoint`));
    return { authorization, token, ...(endSession ? { endSession } : {}) };
  };

  const ruleFor = (login: CompiledLogin): JwtRule => {
    const key = `${login.issuer}\0${login.clientId}`;
    let rule = rules.get(key);
    if (!rule) {
      rule = create(JwtRuleSchema, { issuer: login.issuer, audience: [login.clientId], algorithms: [...DEFAULT_JWT_ALGORITHMS], clockSkew: durationFromMs(DEFAULT_CLOCK_SKEW_MS) });
      setNewest(rules, key, rule, MAX_ISSUERS);
    }
    return rule;
  };

  return {
    endpoints,
    async redeem(login, code, redirectUri, verifier, nonce) {
      const { token } = await endpoints(login.issuer);
      const basic = Buffer.from(`${encodeURIComponent(login.clientId)}:${encodeURIComponent(login.clientSecret)}`).toString("base64");
      const form = new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: redirectUri, code_verifier: verifier });
      let answer: { status: number; json: unknown };
      try {
        answer = await postIdpForm(token, form, { authorization: `Basic ${basic}` }, signal());
      } catch (err) {
        throw providerUnavailable(err);
      }
      const body = (typeof answer.json === "object" && answer.json !== null ? answer.json : {}) as Record<string, unknown>;
      if (answer.status !== 200 || typeof body.id_token !== "string") {
        const error = typeof body.error === "string" && /^[a-z_]{1,64}$/.test(body.error) ? body.error : "no id_token";
        // The operator's client id or secret (a secret expired at the provider): nothing the person can do.
        if (error === "invalid_client" || error === "unauthorized_client") {
          throw new FerryError("unavailable", "login_misconfigured", `the identity provider does not take this app's client (${error}); tell the operator`, { retryAfterSeconds: 60 });
        }
        // invalid_grant and the like: a code made up, used twice or too late. Shown as a code only.
        throw new FerryError("unauthenticated", "code_refused", `the identity provider refused the sign-in (${error}); start again`);
      }
      let verified;
      try {
        verified = await jwt.verify(body.id_token, ruleFor(login));
      } catch (err) {
        throw new FerryError("unauthenticated", "login_failed", "the identity provider's ID token is not valid; start again", { cause: err });
      }
      if (verified.claims.nonce !== nonce) throw new FerryError("unauthenticated", "login_failed", "the ID token is not for this sign-in (nonce); start again");
      if (!forThisClient(verified.claims, login.clientId)) throw new FerryError("unauthenticated", "login_failed", "the ID token was issued to another client (azp); start again");
      return verified.claims;
    },
    close() {
      closing.abort();
    },
  };
}

/** OIDC Core §3.1.3.7: an ID token for several audiences names the client it was issued to in azp; one that names another is not ours. */
export function forThisClient(claims: Record<string, unknown>, clientId: string): boolean {
  const { aud, azp } = claims;
  if (azp !== undefined) return azp === clientId;
  return !Array.isArray(aud) || aud.length <= 1;
}

function providerUnavailable(cause: unknown): FerryError {
  return new FerryError("unavailable", "login_provider_unavailable", "the identity provider cannot be reached; try again shortly", { retryAfterSeconds: 5, cause });
}
