import { LatencyHistogram } from "./latency-histogram.js";

/** One interval of the history. */
export interface HistoryBucket {
  startMs: number;
  requests: number;
  /** 5xx answers and exchanges Ferry failed itself. */
  errors: number;
  /** undefined without traffic. */
  latencyP95Ms: number | undefined;
}

export interface TrafficHistory {
  record(tenant: string, status: number, code: string | undefined, durationMs: number): void;
  /** Oldest first, the current interval last; `tenant` undefined: every tenant. */
  buckets(tenant?: string): HistoryBucket[];
  forgetTenant(tenant: string): void;
  readonly bucketMs: number;
}

interface Slot {
  epoch: number;
  requests: number;
  errors: number;
  latency: LatencyHistogram | undefined;
}

/**
 * The last 15 minutes of this node's traffic in 10-second buckets, for the
 * console's chart: a ring per tenant (and one for the node as a whole) whose
 * slots are reused when their turn comes again, so recording is O(1) and a
 * tenant costs at most `slots` small counters. Only existing tenants are
 * recorded (the observer checks), so clients cannot grow it.
 */
export function createTrafficHistory(options: { bucketMs?: number; slots?: number; now?: () => number } = {}): TrafficHistory {
  const bucketMs = options.bucketMs ?? 10_000;
  const slots = options.slots ?? 90;
  const now = options.now ?? Date.now;
  const all = newRing(slots);
  const byTenant = new Map<string, Slot[]>();

  const add = (ring: Slot[], epoch: number, error: boolean, durationMs: number) => {
    const slot = ring[epoch % slots]!;
    if (slot.epoch !== epoch) {
      slot.epoch = epoch;
      slot.requests = 0;
      slot.errors = 0;
      slot.latency?.reset();
    }
    slot.requests++;
    if (error) slot.errors++;
    (slot.latency ??= new LatencyHistogram()).add(durationMs);
  };

  return {
    bucketMs,
    record(tenant, status, code, durationMs) {
      const epoch = Math.floor(now() / bucketMs);
      const error = code !== undefined || status >= 500;
      add(all, epoch, error, durationMs);
      let ring = byTenant.get(tenant);
      if (!ring) byTenant.set(tenant, (ring = newRing(slots)));
      add(ring, epoch, error, durationMs);
    },
    buckets(tenant) {
      const ring = tenant === undefined ? all : byTenant.get(tenant);
      const current = Math.floor(now() / bucketMs);
      const out: HistoryBucket[] = [];
      for (let epoch = current - slots + 1; epoch <= current; epoch++) {
        const slot = ring?.[epoch % slots];
        const live = slot !== undefined && slot.epoch === epoch && slot.requests > 0;
        out.push({
          startMs: epoch * bucketMs,
          requests: live ? slot.requests : 0,
          errors: live ? slot.errors : 0,
          latencyP95Ms: live ? slot.latency?.quantile(0.95) : undefined,
        });
      }
      return out;
    },
    forgetTenant(tenant) {
      byTenant.delete(tenant);
    },
  };
}

function newRing(slots: number): Slot[] {
  return Array.from({ length: slots }, () => ({ epoch: -1, requests: 0, errors: 0, latency: undefined }));
}
