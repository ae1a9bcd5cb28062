import { sourceKey as clientSourceKey } from "./source-key.js";
import { setNewest } from "../../core/bounded-map.js";
import type { Limits } from "../limits/limits.js";

/**
 * Back-off on failed credentials, per source address: after
 * limits.authFailuresBeforeBackoff failures a source must wait before its next
 * attempt is even looked at (1 s, doubling with each further failure, at most
 * limits.authBackoffMaxMs); attempts during the wait are refused at once
 * without checking the credential, and do not lengthen it. A success resets
 * the source. Secrets are 256-bit, so this is not what keeps them from being
 * guessed: it keeps a flood of wrong ones from costing hashes, audit records
 * and log lines, and it slows a weak bootstrap token down.
 *
 * One instance per kind of credential on each relay node (admin tokens,
 * connector keys): a connector retrying an old key must not lock an office's
 * admins out of the admin API. Memory is bounded: at most MAX_SOURCES sources are kept,
 * the least recently failed go first, and a source that has not failed for a
 * while is forgotten.
 */
export interface SourceBackoff {
  /** Milliseconds `source` must still wait before an attempt of it is checked; 0: check it now. */
  waitMs(source: string): number;
  /** A credential from `source` was wrong; returns the wait this starts (0 below the threshold). */
  failed(source: string): number;
  /** A credential from `source` was right: it starts over. */
  succeeded(source: string): void;
  /** Sources held now (for tests and metrics). */
  readonly size: number;
}

export const MAX_SOURCES = 10_000;
const FIRST_WAIT_MS = 1_000;
/** A source that has not failed for this long (at least) starts over. */
const FORGET_AFTER_MS = 15 * 60_000;

interface Entry {
  failures: number;
  lastFailure: number;
  until: number;
}

export function createSourceBackoff(
  limits: Pick<Limits, "authFailuresBeforeBackoff" | "authBackoffMaxMs">,
  opts: { maxSources?: number; now?: () => number } = {},
): SourceBackoff {
  const now = opts.now ?? Date.now;
  const maxSources = opts.maxSources ?? MAX_SOURCES;
  const forgetAfter = Math.max(FORGET_AFTER_MS, 2 * limits.authBackoffMaxMs);
  // Insertion order is failure order: a failure moves its source to the end, eviction takes from the front.
  const entries = new Map<string, Entry>();

  const current = (key: string, t: number): Entry | undefined => {
    const e = entries.get(key);
    if (e && t - e.lastFailure > forgetAfter) {
      entries.delete(key);
      return undefined;
    }
    return e;
  };

  return {
    waitMs(source) {
      // Nobody failing is the common case: then nothing to look up (every request behind a policy asks).
      if (entries.size === 0) return 0;
      const key = sourceKey(source);
      if (key === undefined) return 0;
      const t = now();
      const e = current(key, t);
      return e ? Math.max(0, e.until - t) : 0;
    },
    failed(source) {
      const key = sourceKey(source);
      if (key === undefined) return 0;
      const t = now();
      const e = current(key, t) ?? { failures: 0, lastFailure: t, until: 0 };
      e.failures++;
      e.lastFailure = t;
      const over = e.failures - limits.authFailuresBeforeBackoff;
      // 2^over without overflow: past ~30 doublings every wait is the cap anyway.
      const wait = over < 0 ? 0 : Math.min(limits.authBackoffMaxMs, FIRST_WAIT_MS * 2 ** Math.min(over, 30));
      e.until = t + wait;
      setNewest(entries, key, e, maxSources);
      return wait;
    },
    succeeded(source) {
      if (entries.size === 0) return;
      const key = sourceKey(source);
      if (key !== undefined) entries.delete(key);
    },
    get size() {
      return entries.size;
    },
  };
}

/**
 * The back-off's key for an address: the per-source key the gateway's limits
 * use too (IPv4 as it is, IPv6 by its /64: an attacker there has 2^64
 * addresses to rotate through). Undefined for no address at all (a socket
 * already gone): no back-off then, rather than one shared by every caller.
 */
export function sourceKey(address: string): string | undefined {
  return address === "" ? undefined : clientSourceKey(address);
}
