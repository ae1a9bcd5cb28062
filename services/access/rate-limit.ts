import { refill, setNewest } from "../../core/bounded-map.js";

/**
 * Token buckets for the access policies' rate limits: `requests` per
 * `perMs`, bursting to `burst`, one bucket per (tenant, rule, key-by). A
 * refusal carries Retry-After and the IETF RateLimit fields of
 * draft-ietf-httpapi-ratelimit-headers-10 (the structured `RateLimit-Policy`
 * and `RateLimit`, not the older RateLimit-Limit/-Remaining/-Reset trio).
 *
 * `share()` is the part of every limit this node enforces (default 1). A
 * cluster passes 1 / live node count, so that with the load spread over the
 * nodes the tenant's limit holds as a whole (services/relay/client-access.ts
 * says what that costs when the load is not spread). The share changes as
 * nodes join and leave; a bucket keeps its tokens through that and only its
 * capacity and refill rate follow: a smaller capacity (a node joined) caps
 * the tokens at the next take, a larger one (a node left) is filled from what
 * is left at the new rate, not at once: the tokens of a node that left go to
 * nobody. So a change never lets through a burst that no node had.
 */
export interface RateSpec {
  /** Names the policy in the RateLimit fields (the rule's name). */
  name: string;
  requests: number;
  perMs: number;
  burst: number;
}

export type RateVerdict = { ok: true } | { ok: false; retryAfterSeconds: number; headers: Record<string, string> };

export interface RateLimiter {
  /** Takes one token from `key`'s bucket (bucketKey), or says how long until there is one. */
  take(key: string, spec: RateSpec): RateVerdict;
  /** Buckets held now (tests, metrics). */
  readonly size: number;
}

export interface RateLimiterOptions {
  /** At most this many buckets; the least recently used go first (a new one starts full). */
  maxBuckets?: number;
  now?: () => number;
  /** This node's part of each limit, in (0, 1]; read at every take, so a change of the cluster is seen at once. */
  share?: () => number;
}

export const MAX_BUCKETS = 100_000;
const TAKEN: RateVerdict = Object.freeze({ ok: true });

/** The bucket of one tenant's rule and one client (or address, or "" for the whole rule). */
export function bucketKey(tenant: string, rule: string, who: string): string {
  return `${tenant}\u0000${rule}\u0000${who}`;
}

export function createRateLimiter(opts: RateLimiterOptions = {}): RateLimiter {
  const now = opts.now ?? Date.now;
  const maxBuckets = opts.maxBuckets ?? MAX_BUCKETS;
  const share = opts.share ?? (() => 1);
  // Insertion order is use order: each take moves its bucket to the end, eviction takes from the front.
  const buckets = new Map<string, { tokens: number; at: number }>();
  return {
    take(key, spec) {
      const s = clampShare(share());
      // Never below one token: a node with a small share must still let a request through now and then.
      const capacity = Math.max(1, spec.burst * s);
      const perMs = (spec.requests * s) / spec.perMs;
      const t = now();
      const bucket = buckets.get(key) ?? { tokens: capacity, at: t };
      // At the rate of now for the whole time since the last take: a share that changed in between is off by at
      // most the difference over that time, and the capacity caps it either way.
      const tokens = refill(bucket, capacity, perMs, t);
      setNewest(buckets, key, bucket, maxBuckets);
      if (tokens >= 1) {
        bucket.tokens = tokens - 1;
        return TAKEN;
      }
      const retryAfterSeconds = Math.max(1, Math.ceil((1 - tokens) / perMs / 1000));
      return { ok: false, retryAfterSeconds, headers: rateLimitHeaders(spec, retryAfterSeconds) };
    },
    get size() {
      return buckets.size;
    },
  };
}

/**
 * A refusal's fields: `RateLimit-Policy: "<rule>";q=<quota>;w=<window s>`,
 * `RateLimit: "<rule>";r=0;t=<s>` and `Retry-After: <s>`. The window is whole
 * seconds, so a sub-second period is stated as its quota per second. The
 * quota is the policy's, not this node's share: that is the contract.
 */
export function rateLimitHeaders(spec: RateSpec, retryAfterSeconds: number): Record<string, string> {
  const w = Math.max(1, Math.ceil(spec.perMs / 1000));
  const q = Math.max(1, Math.floor((spec.requests * w * 1000) / spec.perMs));
  const id = sfString(spec.name);
  return {
    "ratelimit-policy": `${id};q=${q};w=${w}`,
    ratelimit: `${id};r=0;t=${retryAfterSeconds}`,
    "retry-after": String(retryAfterSeconds),
  };
}

function clampShare(s: number): number {
  return Number.isFinite(s) && s > 0 ? Math.min(1, s) : 1;
}

/** An RFC 9651 String: printable ASCII, with `"` and `\` escaped. */
function sfString(text: string): string {
  return `"${text.replace(/[^\x20-\x7e]/g, "?").replace(/["\\]/g, (c) => `\\${c}`)}"`;
}
