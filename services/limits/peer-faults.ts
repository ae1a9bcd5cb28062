import type { Logger } from "../../core/logger.js";
import { LIMIT_NAMES } from "./limits.js";
import { createRateLimitedLog } from "../../core/rate-limited-log.js";

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
  /**
   * Counts one refusal by the named limit (a RelayLimits name, or another fixed
   * name) and logs it like a fault: the first at once, then at most one line a
   * minute per limit, so an operator whose users hit a default learns which
   * limit to raise. `quiet`: the caller logs this refusal itself.
   */
  limited(limit: string, details?: Record<string, unknown>, options?: { quiet?: boolean }): void;
  /** Counts so far, for the metrics endpoint and tests. */
  faults(): ReadonlyMap<string, { source: FaultSource; reason: string; count: number }>;
  limits(): ReadonlyMap<string, number>;
}

export function createPeerFaults(log: Logger, now: () => number = Date.now): PeerFaults {
  const faults = new Map<string, { source: FaultSource; reason: string; count: number }>();
  const limits = new Map<string, number>();
  const warn = createRateLimitedLog(log, now);
  return {
    fault(source, reason, details) {
      const key = `${source}\u0000${reason}`;
      let f = faults.get(key);
      if (!f) faults.set(key, (f = { source, reason, count: 0 }));
      f.count++;
      warn(`fault\u0000${key}`, { source, reason, ...details }, `${source} fault: ${reason}`);
    },
    limited(limit, details, options) {
      limits.set(limit, (limits.get(limit) ?? 0) + 1);
      if (!options?.quiet) warn(`limit\u0000${limit}`, { limit, ...details }, `refused by limit ${limit}${hint(limit)}`);
    },
    faults: () => faults,
    limits: () => limits,
  };
}

/** Where an operator raises the limit, when it is one of the relay's settings. */
function hint(limit: string): string {
  if (LIMIT_NAMES.has(limit)) return ` (raise it with --limit ${limit}=N if this is legitimate load)`;
  if (limit === "maxConcurrentExchanges") return " (the tenant's max_concurrent_exchanges setting)";
  return "";
}
