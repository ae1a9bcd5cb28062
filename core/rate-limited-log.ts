import type { Logger } from "./logger.js";

const EVERY_MS = 60_000;

/**
 * Warnings about things peers can make happen as often as they like (bad
 * frames, refusals by a limit, dropped audit events): the first of each kind
 * is logged at once, then at most one line a minute per kind, saying how many
 * came meanwhile. So the log tells an operator what happens without becoming
 * the attacker's disk filler.
 */
export function createRateLimitedLog(log: Logger, now: () => number = Date.now): (kind: string, fields: Record<string, unknown>, message: string) => void {
  const lines = new Map<string, { loggedAt: number; unlogged: number }>();
  return (kind, fields, message) => {
    let l = lines.get(kind);
    if (!l) lines.set(kind, (l = { loggedAt: Number.NEGATIVE_INFINITY, unlogged: 0 }));
    const t = now();
    if (t - l.loggedAt < EVERY_MS) {
      l.unlogged++;
      return;
    }
    const since = l.unlogged;
    l.loggedAt = t;
    l.unlogged = 0;
    try {
      log.warn({ ...fields, ...(since ? { sinceLastLine: since } : {}) }, message);
    } catch {
      // a logger failure must not turn one bad frame into a crash
    }
  };
}
