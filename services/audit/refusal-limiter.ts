import { sourceKey } from "../auth/source-backoff.js";
import { setNewest } from "../../core/bounded-map.js";

/**
 * Keeps refusals of unauthenticated callers from filling the audit log:
 * per window, at most `perSource` are written for one source address (an
 * IPv6 source by its /64) and at most `total` for all sources together; the
 * rest are counted per source, and the next one written for that source says
 * how many of its own were left out. So a flood from one address neither
 * fills the disk nor hides the refusals of every other address, and each
 * record names where it came from. (Anyone on the internet can cause a
 * refusal; nobody should be able to fill the disk with them.)
 */
export interface RefusalLimiter {
  /** Undefined: do not record this one. Otherwise the number from this source suppressed since its last one recorded. */
  admit(source: string): number | undefined;
}

export interface RefusalLimiterOptions {
  perSource?: number;
  total?: number;
  windowMs?: number;
  /** Sources whose counts are kept; the least recently refused are forgotten first (their suppressed counts with them). */
  maxSources?: number;
  now?: () => number;
}

interface SourceCount {
  windowStart: number;
  inWindow: number;
  suppressed: number;
}

export function createRefusalLimiter(opts: RefusalLimiterOptions = {}): RefusalLimiter {
  const { perSource = 10, total = 60, windowMs = 60_000, maxSources = 4096, now = Date.now } = opts;
  let windowStart = now();
  let inWindow = 0;
  const sources = new Map<string, SourceCount>();
  return {
    admit(source) {
      const t = now();
      if (t - windowStart >= windowMs) {
        windowStart = t;
        inWindow = 0;
      }
      const key = sourceKey(source) ?? "";
      const s = sources.get(key) ?? { windowStart: t, inWindow: 0, suppressed: 0 };
      // The map stays in order of last refusal.
      setNewest(sources, key, s, maxSources);
      if (t - s.windowStart >= windowMs) {
        s.windowStart = t;
        s.inWindow = 0;
      }
      if (s.inWindow >= perSource || inWindow >= total) {
        s.suppressed++;
        return undefined;
      }
      s.inWindow++;
      inWindow++;
      const before = s.suppressed;
      s.suppressed = 0;
      return before;
    },
  };
}
