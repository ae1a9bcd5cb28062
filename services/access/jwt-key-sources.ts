import { createRemoteJWKSet, customFetch, type JWTVerifyGetKey, type RemoteJWKSet } from "jose";
import { setNewest } from "../../core/bounded-map.js";
import { FerryError } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import { createRateLimitedLog } from "../../core/rate-limited-log.js";
import { fetchIdpJson, idpEndpointProblem, idpUrlProblem } from "./jwt-fetch.js";

/** Where an issuer's keys are (its discovery document) is looked up again after this long. */
export const DISCOVERY_MAX_AGE_MS = 5 * 60_000;
/** Keys are fetched again after this long, so a key the provider withdrew stops being trusted (jose's cacheMaxAge). */
export const KEYS_MAX_AGE_MS = 10 * 60_000;
/** After a fetch, a token with an unknown kid refetches the keys only this much later (jose's cooldownDuration). */
export const KEY_REFETCH_COOLDOWN_MS = 30_000;
/** A failed fetch is not tried again for 1 s, doubling with each further failure up to this. */
const FAILURE_WAIT_MAX_MS = 60_000;

export interface KeySourceOptions {
  fetchTimeoutMs: number;
  maxIssuers: number;
  refetchCooldownMs: number;
  now: () => number;
  log?: Logger;
}

/** Keys of the identity providers the tenants' rules name, fetched on demand and cached (bounded). */
export interface KeySources {
  /**
   * The key resolver for tokens of `issuer` (keys from `jwksUrl`, else from its
   * OIDC discovery). Nothing is fetched until jose asks for a key, i.e. after
   * the token parsed and its alg was accepted. Rejects with jwt_invalid when
   * the keys cannot be had now.
   */
  resolver(issuer: string, jwksUrl: string): JWTVerifyGetKey;
  /** The issuer's discovery document, as checked and cached for its keys (also what a sign-in needs). Rejects with jwt_keys_unavailable. */
  metadata(issuer: string): Promise<ProviderMetadata>;
  close(): void;
}

/** What the relay reads of a provider's discovery document: where its keys are, and its endpoints for signing people in. */
export interface ProviderMetadata {
  jwksUri: string;
  authorizationEndpoint?: string;
  tokenEndpoint?: string;
  /** RP-initiated logout, when the provider offers it. */
  endSessionEndpoint?: string;
}

interface Backoff {
  failures: number;
  retryAt: number;
}

interface Discovered {
  metadata?: ProviderMetadata;
  fetchedAt: number;
  backoff: Backoff;
  pending?: Promise<ProviderMetadata>;
}

// The provider's outage, not the client's fault: a 503 that counts against nobody's back-off.
const unavailable = () =>
  new FerryError("unavailable", "jwt_keys_unavailable", "the token cannot be checked now: the identity provider's keys are not available", {
    retryAfterSeconds: 5,
  });

export function createKeySources(opts: KeySourceOptions): KeySources {
  const { now } = opts;
  const warn = opts.log ? createRateLimitedLog(opts.log, now) : () => {};
  // Both bounded, least recently used first out: rules come from admins, but a cap keeps a mistake (or a
  // discovery document pointing somewhere new on every fetch) from growing them without end.
  const keySets = new Map<string, RemoteJWKSet>();
  const discovered = new Map<string, Discovered>();
  const closing = new AbortController();

  const failed = (b: Backoff) => {
    b.failures++;
    b.retryAt = now() + Math.min(FAILURE_WAIT_MAX_MS, 1000 * 2 ** Math.min(b.failures - 1, 10));
  };
  const signal = (timeout: AbortSignal) => AbortSignal.any([timeout, closing.signal]);

  const keysAt = (url: string): RemoteJWKSet => {
    let keys = keySets.get(url);
    if (!keys) {
      const problem = idpUrlProblem(url);
      if (problem) {
        // The policy's validation refuses such a jwksUrl; this only guards a rule that skipped it.
        warn("jwt_keys", { url: withoutCredentials(url) }, `identity provider keys URL ${problem}; its tokens are refused`);
        throw unavailable();
      }
      const backoff: Backoff = { failures: 0, retryAt: 0 };
      keys = createRemoteJWKSet(new URL(url), {
        timeoutDuration: opts.fetchTimeoutMs,
        cooldownDuration: opts.refetchCooldownMs,
        cacheMaxAge: KEYS_MAX_AGE_MS,
        // Our fetch: no redirects, a size cap, and a back-off after failures (jose's cooldown counts from the
        // last success only, so without it an unreachable provider would be asked again on every token).
        [customFetch]: async (href, init) => {
          if (closing.signal.aborted || now() < backoff.retryAt) throw unavailable();
          try {
            const jwks = await fetchIdpJson(href, signal(init.signal));
            if (!isJwks(jwks)) throw new Error(`${href} did not send a JSON Web Key Set`);
            backoff.failures = 0;
            return new Response(JSON.stringify(jwks), { status: 200, headers: { "content-type": "application/json" } });
          } catch (err) {
            failed(backoff);
            warn("jwt_keys", { url: href, error: (err as Error).message }, "identity provider keys unavailable; its tokens are refused meanwhile");
            throw unavailable();
          }
        },
      });
    }
    setNewest(keySets, url, keys, opts.maxIssuers);
    return keys;
  };

  const discover = (issuer: string): Promise<ProviderMetadata> => {
    let d = discovered.get(issuer);
    if (!d) d = { fetchedAt: Number.NEGATIVE_INFINITY, backoff: { failures: 0, retryAt: 0 } };
    setNewest(discovered, issuer, d, opts.maxIssuers);
    if (d.metadata !== undefined && now() - d.fetchedAt < DISCOVERY_MAX_AGE_MS) return Promise.resolve(d.metadata);
    if (d.pending) return d.pending;
    // Where the keys are changes rarely: during a back-off, or when the refresh fails, the last answer stands.
    if (now() < d.backoff.retryAt) return d.metadata !== undefined ? Promise.resolve(d.metadata) : Promise.reject(unavailable());
    const entry = d;
    const url = `${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`;
    entry.pending = fetchIdpJson(url, signal(AbortSignal.timeout(opts.fetchTimeoutMs)))
      .then((doc) => {
        const metadata = metadataOf(doc, issuer, url);
        entry.metadata = metadata;
        entry.fetchedAt = now();
        entry.backoff.failures = 0;
        return metadata;
      })
      .catch((err: unknown) => {
        failed(entry.backoff);
        warn("jwt_discovery", { url, error: (err as Error).message }, "identity provider discovery failed; its tokens are refused meanwhile");
        if (entry.metadata !== undefined) return entry.metadata;
        throw unavailable();
      })
      .finally(() => {
        entry.pending = undefined;
      });
    return entry.pending;
  };

  return {
    resolver(issuer, jwksUrl) {
      return async (header, token) => {
        if (closing.signal.aborted) throw unavailable();
        const keys = keysAt(jwksUrl || (await discover(issuer)).jwksUri);
        return keys(header, token);
      };
    },
    metadata: discover,
    close() {
      closing.abort();
      keySets.clear();
      discovered.clear();
    },
  };
}

/**
 * The discovery document's jwks_uri and endpoints, after checking it is the document of `issuer` (OIDC Discovery 1.0
 * §4.3). jwks_uri must be fit to fetch; an endpoint that is not is left out (a sign-in then says the provider has none),
 * so one bad entry does not stop the provider's tokens from being checked.
 */
function metadataOf(doc: unknown, issuer: string, url: string): ProviderMetadata {
  if (typeof doc !== "object" || doc === null) throw new Error(`${url} is not a discovery document`);
  const d = doc as Record<string, unknown>;
  if (d.issuer !== issuer) throw new Error(`${url} names the issuer ${JSON.stringify(d.issuer)}, not ${JSON.stringify(issuer)}`);
  const jwksUri = d.jwks_uri;
  if (typeof jwksUri !== "string") throw new Error(`${url} has no jwks_uri`);
  const problem = idpEndpointProblem(jwksUri, issuer);
  if (problem) throw new Error(`${url}: its jwks_uri ${JSON.stringify(jwksUri)} ${problem}`);
  const endpoint = (name: string) => {
    const v = d[name];
    return typeof v === "string" && idpEndpointProblem(v, issuer) === undefined ? v : undefined;
  };
  const metadata: ProviderMetadata = { jwksUri };
  const [authorization, token, endSession] = ["authorization_endpoint", "token_endpoint", "end_session_endpoint"].map(endpoint);
  if (authorization) metadata.authorizationEndpoint = authorization;
  if (token) metadata.tokenEndpoint = token;
  if (endSession) metadata.endSessionEndpoint = endSession;
  return metadata;
}

function isJwks(value: unknown): boolean {
  const keys = (value as { keys?: unknown } | null)?.keys;
  return Array.isArray(keys) && keys.every((k) => typeof k === "object" && k !== null && !Array.isArray(k));
}

/** A URL fit for a log line: whatever credentials a mistaken rule put in it left out. */
function withoutCredentials(url: string): string {
  try {
    const u = new URL(url);
    u.username = "";
    u.password = "";
    return u.href;
  } catch {
    return "(not a URL)";
  }
}
