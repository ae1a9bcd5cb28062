import type { Logger } from "../../clients/sdk/logger.js";

/** Where hostile or broken input came from. */
export type FaultSource = "client" | "connector" | "target" | "cluster" | "store";

/**
 * What a relay node counts about peers that misbehave or hit a limit: a bad
 * frame, header or record (a fault, by its source and a fixed reason), and
 * each refusal by a resource limit. Nothing here throws, and every label is a
 * fixed string from our own code, never peer input, so a peer cannot grow the
 * metrics. One object is shared by the server (which exists before the relay)
 * and the relay; /metrics reads it at scrape time.
 */
export interface PeerFaults {
  /**
   * Counts one fault and logs it: the first of each (source, reason) at once,
   * then at most one line a minute with how many came meanwhile. `details` go
   * in the log line only (keep them short; never secrets).
   */
  fault(source: FaultSource, reason: string, details?: Record<string, unknown>): void;
  /** Counts one refusal by the named limit (a RelayLimits name, or another fixed name). */
  limited(limit: string): void;
  /** Counts so far, for the metrics endpoint and tests. */
  faults(): ReadonlyMap<string, { source: FaultSource; reason: string; count: number }>;
  limits(): ReadonlyMap<string, number>;
}

const LOG_EVERY_MS = 60_000;

export function createPeerFaults(log: Logger, now: () => number = Date.now): PeerFaults {
  const faults = new Map<string, { source: FaultSource; reason: string; count: number; loggedAt: number; unlogged: number }>();
  const limits = new Map<string, number>();
  return {
    fault(source, reason, details) {
      const key = `${source}\u0000${reason}`;
      let f = faults.get(key);
      if (!f) faults.set(key, (f = { source, reason, count: 0, loggedAt: Number.NEGATIVE_INFINITY, unlogged: 0 }));
      f.count++;
      const t = now();
      if (t - f.loggedAt < LOG_EVERY_MS) {
        f.unlogged++;
        return;
      }
      const since = f.unlogged;
      f.loggedAt = t;
      f.unlogged = 0;
      try {
        log.warn({ source, reason, ...details, ...(since ? { sinceLastLine: since } : {}) }, `${source} fault: ${reason}`);
      } catch {
        // a logger failure must not turn one bad frame into a crash
      }
    },
    limited(limit) {
      limits.set(limit, (limits.get(limit) ?? 0) + 1);
    },
    faults: () => faults,
    limits: () => limits,
  };
}
