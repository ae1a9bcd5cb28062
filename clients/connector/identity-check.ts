import { errors, jwtVerify, type JWTVerifyGetKey } from "jose";
import type { Header } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { FerryError } from "../../core/errors.js";
import type { RelayNetwork } from "./relay-channel.js";
import { getFromRelay } from "./relay-get.js";
import { createRelayKeySet, KEYS_UNAVAILABLE, RELAY_JWKS_PATH, type RelayKeySet } from "./relay-jwks.js";

/** The header the relay signs each request's identity into (docs/access.md). */
export const IDENTITY_HEADER = "x-ferry-identity";
const IDENTITY_TYPE = "ferry-identity+jwt";
/** Clocks of relay and connector may disagree by this much. */
const CLOCK_SKEW_S = 30;
/** Far more than a relay's identity takes (~600 bytes); a longer header is refused unread. */
const MAX_TOKEN_CHARS = 8 * 1024;
const JWKS_TIMEOUT_MS = 5_000;
const JWKS_MAX_BYTES = 64 * 1024;

/** The tunnel a request came on: the relay its identity must be signed by, and the tenant its Welcome named. */
export interface TunnelOrigin {
  readonly relay: URL;
  /** Undefined before Welcome (no request comes then). */
  readonly tenant: string | undefined;
}

export type IdentityRefusalCode = "identity_required" | "identity_invalid" | "identity_unavailable";

/** Why a request for a `requireIdentity` target may not go on. */
export interface IdentityRefusal {
  /** 403 for a missing or invalid identity, 503 when the relay's keys cannot be had. */
  status: 403 | 503;
  code: IdentityRefusalCode;
  /** What was wrong, for the client; never the token. */
  message: string;
  /** More for the connector's log (why the keys could not be fetched); never the token. */
  detail?: string;
}

export interface IdentityCheck {
  /** Resolves with why the request is refused, or undefined when its identity is valid for `target` on `tunnel`. Never rejects. */
  check(headers: readonly Header[], target: string, tunnel: TunnelOrigin | undefined): Promise<IdentityRefusal | undefined>;
  /** Ends key fetches in progress. */
  close(): void;
}

export interface IdentityCheckOptions {
  /** How the tunnels reach the relays: the keys are fetched the same way. */
  network: RelayNetwork;
  env?: NodeJS.ProcessEnv;
  /** Bounds of one JWKS fetch; defaults 5 s and 64 KiB. */
  fetchTimeoutMs?: number;
  maxJwksBytes?: number;
  /** See RelayKeySetOptions. */
  minIntervalMs?: number;
  maxAgeMs?: number;
  maxStaleMs?: number;
  now?(): number;
}

/**
 * Checks X-Ferry-Identity for targets with `requireIdentity`: a JWS the relay signed after the tenant's access
 * policy let the request through, so a request that reached the connector some other way (a route that
 * skipped the policy, a relay bug) does not reach the target. Keys come from the relay the tunnel is on, at
 * /.well-known/ferry/jwks.json, one cached set per relay.
 */
export function createIdentityCheck(o: IdentityCheckOptions): IdentityCheck {
  // One set per relay origin; the origins are the connector's configured relays, so the map stays small.
  const sets = new Map<string, RelayKeySet>();
  const keysOf = (relay: URL): RelayKeySet => {
    let set = sets.get(relay.origin);
    if (!set) {
      set = createRelayKeySet({
        load: (signal) => loadJwks(relay, o, signal),
        ...(o.minIntervalMs !== undefined ? { minIntervalMs: o.minIntervalMs } : {}),
        ...(o.maxAgeMs !== undefined ? { maxAgeMs: o.maxAgeMs } : {}),
        ...(o.maxStaleMs !== undefined ? { maxStaleMs: o.maxStaleMs } : {}),
        ...(o.now ? { now: o.now } : {}),
      });
      sets.set(relay.origin, set);
    }
    return set;
  };
  return {
    async check(headers, target, tunnel) {
      const token = identityOf(headers);
      if (token === SEVERAL) return invalid("the request has more than one X-Ferry-Identity");
      if (token === undefined) return { status: 403, code: "identity_required", message: "this target takes only requests with an X-Ferry-Identity from the relay (the tenant needs an access policy)" };
      // The audience names the tenant: without the Welcome's word for it nothing can be checked.
      if (!tunnel?.tenant) return { status: 503, code: "identity_unavailable", message: "the connector does not know this tunnel's tenant" };
      return verifyIdentity(token, { target, tenant: tunnel.tenant }, keysOf(tunnel.relay).key, o.now);
    },
    close() {
      for (const set of sets.values()) set.close();
      sets.clear();
    },
  };
}

/** identityOf found more than one X-Ferry-Identity: no check accepts that, no target gets any of them. */
export const SEVERAL = Symbol("several identities");

/** The request's X-Ferry-Identity, undefined without one, SEVERAL with more than one. */
export function identityOf(headers: readonly Header[]): string | undefined | typeof SEVERAL {
  let token: string | undefined;
  for (const h of headers) {
    if (h.name.length !== IDENTITY_HEADER.length || h.name.toLowerCase() !== IDENTITY_HEADER) continue;
    if (token !== undefined) return SEVERAL;
    token = h.value;
  }
  return token;
}

/**
 * Verifies one identity: ES256 only (never "none", never an HMAC), typ ferry-identity+jwt, issuer "ferry",
 * audience "<target>.<tenant>", exp and nbf with 30 s of clock skew, and tenant and target claims that are
 * this request's. Undefined when valid.
 */
export async function verifyIdentity(
  token: string,
  expected: { target: string; tenant: string },
  keys: JWTVerifyGetKey,
  now?: () => number,
): Promise<IdentityRefusal | undefined> {
  if (token.length > MAX_TOKEN_CHARS) return invalid(`X-Ferry-Identity is longer than ${MAX_TOKEN_CHARS} characters`);
  try {
    const { payload } = await jwtVerify(token, keys, {
      algorithms: ["ES256"],
      typ: IDENTITY_TYPE,
      issuer: "ferry",
      audience: `${expected.target}.${expected.tenant}`,
      clockTolerance: CLOCK_SKEW_S,
      requiredClaims: ["exp", "tenant", "target"],
      ...(now ? { currentDate: new Date(now()) } : {}),
    });
    if (payload.tenant !== expected.tenant) return invalid(`X-Ferry-Identity is for tenant "${String(payload.tenant).slice(0, 64)}"`);
    if (payload.target !== expected.target) return invalid(`X-Ferry-Identity is for target "${String(payload.target).slice(0, 64)}"`);
    return undefined;
  } catch (err) {
    if (err instanceof FerryError && err.code === KEYS_UNAVAILABLE) {
      // The client learns that the check could not be made, not the connector's network (addresses, proxy).
      return { status: 503, code: "identity_unavailable", message: "the relay's identity keys cannot be fetched now; try again", detail: err.message };
    }
    return invalid(`X-Ferry-Identity is not valid: ${reasonOf(err)}`);
  }
}

function invalid(message: string): IdentityRefusal {
  return { status: 403, code: "identity_invalid", message };
}

/** jose's own words for what failed ("exp" claim timestamp check failed, signature verification failed, ...). */
function reasonOf(err: unknown): string {
  if (err instanceof errors.JWKSNoMatchingKey) return "no key of the relay's has its kid";
  if (err instanceof errors.JOSEError) return err.message;
  return "it cannot be read";
}

/** GET the relay's JWKS over the tunnels' own path (relay-get.ts), bounded in time and size. */
async function loadJwks(relay: URL, o: IdentityCheckOptions, signal: AbortSignal): Promise<unknown> {
  const answer = await getFromRelay(relay, RELAY_JWKS_PATH, o.network, {
    timeoutMs: o.fetchTimeoutMs ?? JWKS_TIMEOUT_MS,
    maxBytes: o.maxJwksBytes ?? JWKS_MAX_BYTES,
    accept: "application/jwk-set+json, application/json",
    signal,
    ...(o.env ? { env: o.env } : {}),
  });
  if (answer.status !== 200) throw new Error(`${relay.origin}${RELAY_JWKS_PATH} answered ${answer.status}`);
  try {
    return JSON.parse(answer.body.toString("utf8"));
  } catch {
    throw new Error(`${relay.origin}${RELAY_JWKS_PATH} is not JSON`);
  }
}
