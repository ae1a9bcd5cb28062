import { FerryError } from "../../core/errors.js";
import { refill } from "../../core/bounded-map.js";
import type { PeerFaults } from "../limits/peer-faults.js";

/** Audit queries running at once on one node, all tokens together (they take turns in the audit worker anyway). */
export const MAX_AUDIT_QUERIES_IN_FLIGHT = 4;
/** Of which one admin token may hold. */
export const MAX_AUDIT_QUERIES_PER_TOKEN = 2;
/** Queries that wait for a turn, per node and per token; beyond, audit_busy at once. */
export const MAX_AUDIT_QUERIES_WAITING = 32;
export const MAX_AUDIT_QUERIES_WAITING_PER_TOKEN = 8;

export interface AuditQueryGate {
  /**
   * Runs `query` for this token when it has a turn, or throws
   * resource_exhausted when the token's quota, or the room to wait, is spent.
   * A call whose `signal` aborts while it waits gives up its place.
   */
  run<T>(tokenId: string, query: () => Promise<T>, signal?: AbortSignal): Promise<T>;
}

interface Bucket {
  /** Calls left (fractional while refilling) as of `at`. */
  tokens: number;
  at: number;
  running: number;
  waiting: number;
}

/**
 * ListAuditEvents reads up to 16 MiB of log per call, so it is rationed: per
 * admin token a bucket of `perMinute` calls refilled evenly over a minute,
 * and a bound on the calls running at once per token and per node; the rest
 * wait their turn in a bounded line (a token cannot queue up work without
 * end, nor take every turn while others wait).
 */
export function createAuditQueryGate(opts: { perMinute: number; faults?: PeerFaults; now?: () => number }): AuditQueryGate {
  const now = opts.now ?? Date.now;
  const refillMs = 60_000 / opts.perMinute;
  // Tokens are authenticated before they get here: the map is as big as the token list.
  const buckets = new Map<string, Bucket>();
  const line: Array<{ bucket: Bucket; start(): void }> = [];
  let running = 0;

  const refuse = (limit: string, code: string, message: string, retryAfterSeconds: number): never => {
    opts.faults?.limited(limit);
    throw new FerryError("resource_exhausted", code, message, { retryAfterSeconds });
  };
  const mayStart = (b: Bucket) => b.running < MAX_AUDIT_QUERIES_PER_TOKEN && running < MAX_AUDIT_QUERIES_IN_FLIGHT;
  /** Takes a turn (before the call resumes, so the next one counts it). */
  const take = (b: Bucket) => {
    b.running++;
    running++;
  };
  /** Starts the first waiting calls whose token may run one now. */
  const next = () => {
    for (let i = 0; i < line.length && running < MAX_AUDIT_QUERIES_IN_FLIGHT; ) {
      const w = line[i]!;
      if (!mayStart(w.bucket)) {
        i++;
        continue;
      }
      line.splice(i, 1);
      take(w.bucket);
      w.start();
    }
  };

  return {
    async run(tokenId, query, signal) {
      const t = now();
      let b = buckets.get(tokenId);
      if (!b) buckets.set(tokenId, (b = { tokens: opts.perMinute, at: t, running: 0, waiting: 0 }));
      refill(b, opts.perMinute, 1 / refillMs, t);
      if (b.tokens < 1) {
        const wait = Math.ceil(((1 - b.tokens) * refillMs) / 1000);
        refuse("auditQueriesPerMinute", "audit_rate_limited", `this token made its ${opts.perMinute} audit queries a minute (limits.auditQueriesPerMinute); retry in ${wait}s`, wait);
      }
      const bucket = b;
      const start = mayStart(bucket);
      if (!start && (bucket.waiting >= MAX_AUDIT_QUERIES_WAITING_PER_TOKEN || line.length >= MAX_AUDIT_QUERIES_WAITING)) {
        refuse("auditQueriesInFlight", "audit_busy", "too many audit queries are waiting on this node; retry when yours are done", 1);
      }
      // Counted when admitted, so calls waiting in line cannot exceed the quota either.
      bucket.tokens -= 1;
      if (start) take(bucket);
      else {
        bucket.waiting++;
        try {
          await new Promise<void>((resolve, reject) => {
            const entry = { bucket, start: resolve };
            line.push(entry);
            signal?.addEventListener("abort", () => {
              const i = line.indexOf(entry);
              if (i >= 0) line.splice(i, 1);
              reject(new FerryError("unavailable", "cancelled", "the audit query was cancelled while it waited"));
            }, { once: true });
          });
        } finally {
          bucket.waiting--;
        }
      }
      try {
        return await query();
      } finally {
        bucket.running--;
        running--;
        next();
      }
    },
  };
}
