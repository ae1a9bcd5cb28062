/**
 * Keeps refusals of unauthenticated callers from filling the audit log: at
 * most `perWindow` are written per window; the rest are counted, and the next
 * one written says how many were left out. (Anyone on the internet can cause a
 * refusal; nobody should be able to fill the disk with them.)
 */
export interface RefusalLimiter {
  /** Undefined: do not record this one. Otherwise the number suppressed since the last one recorded. */
  admit(): number | undefined;
}

export function createRefusalLimiter(perWindow = 60, windowMs = 60_000, now: () => number = Date.now): RefusalLimiter {
  let windowStart = now();
  let inWindow = 0;
  let suppressed = 0;
  return {
    admit() {
      const t = now();
      if (t - windowStart >= windowMs) {
        windowStart = t;
        inWindow = 0;
      }
      if (inWindow >= perWindow) {
        suppressed++;
        return undefined;
      }
      inWindow++;
      const before = suppressed;
      suppressed = 0;
      return before;
    },
  };
}
