import { create } from "@bufbuild/protobuf";
import { JwtRuleSchema, type JwtRule } from "../../gen/ferry/access/v1/access_policy_pb.js";
import { setNewest } from "../../core/bounded-map.js";
import { durationFromMs } from "../../core/duration.js";
import { FerryError } from "../../core/errors.js";
import { fetchIdpJson, idpUrlProblem, postIdpForm } from "../access/jwt-fetch.js";
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
   * rejects with unauthenticated "login_failed" (a message safe to show) or unavailable.
   */
  redeem(login: CompiledLogin, code: string, redirectUri: string, verifier: string, nonce: string): Promise<Record<string, unknown>>;
  close(): void;
}

const DISCOVERY_MAX_AGE_MS = 5 * 60_000;
const MAX_ISSUERS = 1000;
const FETCH_TIMEOUT_MS = 5000;

/**
 * The relay as an OpenID Connect relying party: discovery and the token
 * endpoint over the same capped, redirect-free fetch as the JWT keys, the ID
 * token through the same verifier as bearer tokens (the provider's keys are
 * fetched and cached once for both).
 */
export function createOidcClient(jwt: JwtVerifier, opts: { now?: () => number } = {}): OidcClient {
  const now = opts.now ?? Date.now;
  const discovered = new Map<string, { at: number; endpoints: Promise<ProviderEndpoints> }>();
  const rules = new Map<string, JwtRule>();
  const closing = new AbortController();
  const signal = () => AbortSignal.any([AbortSignal.timeout(FETCH_TIMEOUT_MS), closing.signal]);

  const endpoints = (issuer: string): Promise<ProviderEndpoints> => {
    const hit = discovered.get(issuer);
    if (hit && now() - hit.at < DISCOVERY_MAX_AGE_MS) return hit.endpoints;
    const url = `${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`;
    const pending = fetchIdpJson(url, signal()).then((doc) => endpointsOf(doc, issuer, url));
    // A failure is not kept: the next sign-in asks again (the caller's own back-off is the client's retry).
    pending.catch(() => discovered.delete(issuer));
    setNewest(discovered, issuer, { at: now(), endpoints: pending }, MAX_ISSUERS);
    return pending.catch((err: unknown) => {
      throw new FerryError("unavailable", "login_provider_unavailable", "the identity provider cannot be reached; try again shortly", { retryAfterSeconds: 5, cause: err });
    });
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
        throw new FerryError("unavailable", "login_provider_unavailable", "the identity provider cannot be reached; try again shortly", { retryAfterSeconds: 5, cause: err });
      }
      const body = (typeof answer.json === "object" && answer.json !== null ? answer.json : {}) as Record<string, unknown>;
      if (answer.status !== 200 || typeof body.id_token !== "string") {
        // invalid_grant: a code used twice or too late; invalid_client: the operator's client secret. Shown as a code only.
        const error = typeof body.error === "string" && /^[a-z_]{1,64}$/.test(body.error) ? body.error : "no id_token";
        throw new FerryError("unauthenticated", "login_failed", `the identity provider refused the sign-in (${error}); start again`);
      }
      let verified;
      try {
        verified = await jwt.verify(body.id_token, ruleFor(login));
      } catch (err) {
        throw new FerryError("unauthenticated", "login_failed", "the identity provider's ID token is not valid; start again", { cause: err });
      }
      if (verified.claims.nonce !== nonce) throw new FerryError("unauthenticated", "login_failed", "the ID token is not for this sign-in (nonce); start again");
      return verified.claims;
    },
    close() {
      closing.abort();
      discovered.clear();
    },
  };
}

function endpointsOf(doc: unknown, issuer: string, url: string): ProviderEndpoints {
  if (typeof doc !== "object" || doc === null) throw new Error(`${url} is not a discovery document`);
  const d = doc as Record<string, unknown>;
  // OIDC Discovery §4.3: the document's issuer must be the one asked for, or its endpoints are someone else's.
  if (d.issuer !== issuer) throw new Error(`${url} names issuer ${JSON.stringify(d.issuer)}, not ${issuer}`);
  const endpoint = (name: string, required: boolean): string | undefined => {
    const v = d[name];
    if (v === undefined && !required) return undefined;
    if (typeof v !== "string" || idpUrlProblem(v)) throw new Error(`${url}: ${name} is missing or not an https URL`);
    return v;
  };
  const endSession = endpoint("end_session_endpoint", false);
  return { authorization: endpoint("authorization_endpoint", true)!, token: endpoint("token_endpoint", true)!, ...(endSession ? { endSession } : {}) };
}
