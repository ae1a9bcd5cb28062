import { abortableDelay } from "../../core/abortable-delay.js";
import { createLocalJWKSet, errors, type JSONWebKeySet, type JWTVerifyGetKey } from "jose";
import { FerryError } from "../../core/errors.js";

/** Where a relay publishes the public keys it signs X-Ferry-Identity with. */
export const RELAY_JWKS_PATH = "/.well-known/ferry/jwks.json";

/** The error code of a key set that cannot be had (the check answers 503, not 403). */
export const KEYS_UNAVAILABLE = "identity_unavailable";

export interface RelayKeySetOptions {
  /** Fetches the relay's JWKS document, parsed; rejects when it cannot. */
  load(signal: AbortSignal): Promise<unknown>;
  /** Keys this old are fetched again in the background (the relay says max-age=60). Default 60 s. */
  maxAgeMs?: number;
  /** Fetches start at least this far apart, however many unknown kids arrive. Default 5 s. */
  minIntervalMs?: number;
  /** Keys not refreshed for this long are no longer used (the relay has been unreachable). Default 10 min. */
  maxStaleMs?: number;
  now?(): number;
}

export interface RelayKeySet {
  /** For jose's jwtVerify: the key a token's "kid" names; fetches the set first, or again for a kid it does not know. */
  readonly key: JWTVerifyGetKey;
  /** Ends a fetch in progress and any wait for one. */
  close(): void;
}

/** The most keys a set may hold: a relay cluster publishes one or two per node. */
const MAX_KEYS = 256;

/**
 * One relay's identity keys, cached. A token naming a kid the set lacks makes it fetch again: the relay
 * publishes a new key before it signs with it (a new node, a rotation), so a fresh set has it. Fetches are
 * throttled: at most one in flight, each at least `minIntervalMs` after the last, and every token waiting for
 * one shares it; a kid that is still unknown then is refused. So a flood of made-up kids costs the relay one
 * fetch per interval, and a key published just after a fetch costs its first requests a wait, not a refusal.
 * While the relay cannot be reached the last good set keeps serving, up to `maxStaleMs`; after that, and when
 * there never was one, the key lookup fails with FerryError "identity_unavailable" (fast, while the last
 * attempt is recent).
 */
export function createRelayKeySet(o: RelayKeySetOptions): RelayKeySet {
  const now = o.now ?? Date.now;
  const maxAgeMs = o.maxAgeMs ?? 60_000;
  const minIntervalMs = o.minIntervalMs ?? 5_000;
  const maxStaleMs = o.maxStaleMs ?? 600_000;
  const closing = new AbortController();
  let local: JWTVerifyGetKey | undefined;
  /** When the fetch that gave `local` started. */
  let fetchedAt = Number.NEGATIVE_INFINITY;
  /** When the last fetch started, whatever came of it. */
  let attemptedAt = Number.NEGATIVE_INFINITY;
  /** Why the last fetch failed; cleared by one that worked. */
  let failure: string | undefined;
  /** The fetch in flight or waiting for its turn: every caller in the meantime shares it. */
  let pending: Promise<void> | undefined;

  const unavailable = (why: string) => new FerryError("unavailable", KEYS_UNAVAILABLE, `the relay's identity keys cannot be fetched: ${why}`);

  const fetchOnce = async (): Promise<void> => {
    const wait = attemptedAt + minIntervalMs - now();
    if (wait > 0) await abortableDelay(wait, closing.signal, { unref: true });
    if (closing.signal.aborted) throw unavailable("the connector is stopping");
    const started = now();
    attemptedAt = started;
    try {
      local = createLocalJWKSet(keySetOf(await o.load(closing.signal)));
      fetchedAt = started;
      failure = undefined;
    } catch (err) {
      failure = (err as Error).message;
      throw unavailable(failure);
    }
  };
  const refresh = (): Promise<void> => {
    if (!pending) {
      const p = fetchOnce();
      const clear = () => {
        if (pending === p) pending = undefined;
      };
      p.then(clear, clear);
      pending = p;
    }
    return pending;
  };

  /** The last fetch failed a moment ago: answer at once instead of every request waiting for the next try. */
  const down = () => failure !== undefined && pending === undefined && now() - attemptedAt < minIntervalMs;

  const key: JWTVerifyGetKey = async (header, token) => {
    // Every relay key has a kid; without one, a set of several keys could not say which.
    if (typeof header.kid !== "string") throw new errors.JWSInvalid('the identity names no key ("kid")');
    const age = now() - fetchedAt;
    if (!local || age >= maxStaleMs) {
      if (down()) throw unavailable(failure!);
      await refresh();
    } else if (age >= maxAgeMs) {
      refresh().catch(() => {}); // in the background: the keys in hand still serve
    }
    try {
      return await local!(header, token);
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey)) throw err;
    }
    if (down()) throw unavailable(failure!);
    await refresh();
    return local!(header, token);
  };

  return {
    key,
    close: () => closing.abort(),
  };
}

/**
 * The relay's document as a key set: {"keys": [...]}, at most MAX_KEYS of them. Only P-256 public keys with a
 * kid are kept: nothing else can verify an ES256 identity, and a private half has no business in the set.
 */
export function keySetOf(doc: unknown): JSONWebKeySet {
  const keys = (doc as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys)) throw new Error('the JWKS is not a JSON object with a "keys" array');
  if (keys.length > MAX_KEYS) throw new Error(`the JWKS has ${keys.length} keys (at most ${MAX_KEYS} are taken)`);
  return {
    keys: keys.filter(
      (k): k is JSONWebKeySet["keys"][number] =>
        typeof k === "object" && k !== null && k.kty === "EC" && k.crv === "P-256" && typeof k.kid === "string" && !("d" in k),
    ),
  };
}
