/**
 * Per-tenant, per-target traffic figures: request counts by outcome, bytes and
 * latency quantiles, both since start ("total") and over a sliding "recent"
 * window. The window is a ring of sub-windows (slots) indexed by
 * floor(now / slotMs); a slot whose epoch is stale is emptied and reused when
 * its turn comes again, so a busy target costs one total plus at most `slots`
 * slot counters forever, and recording stays O(1).
 *
 * The tenant as a whole (target "") is not recorded separately but merged
 * from its targets at snapshot time: snapshots are rare (the admin API), while
 * record() runs once per relayed exchange.
 */
import { LatencyHistogram } from "./latency-histogram.js";

/** Where requests for a target no connector serves (and no setting names) are counted: not a DNS label, so no real target collides. */
export const OTHER_TARGET = "(other)";

/** How one exchange ended, as the gateway saw it. */
export interface ExchangeOutcome {
  tenant: string;
  target: string;
  /** HTTP status sent to the client; 0 when none was (the client went away first). */
  status: number;
  /** Ferry's own error code when Ferry failed the exchange itself (e.g. "no_connector", "timeout", "target_unreachable", "cancelled"); undefined when the target answered. */
  code?: string;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
}

export interface TrafficFigures {
  requests: number;
  /** 4xx answered by the target (code undefined). */
  clientErrors: number;
  /** 5xx answered by the target (code undefined). */
  serverErrors: number;
  /** Exchanges Ferry failed itself, by code. */
  relayErrors: Record<string, number>;
  bytesIn: number;
  bytesOut: number;
  latencyP50Ms: number;
  latencyP95Ms: number;
  latencyP99Ms: number;
}

export interface StatsSnapshot {
  tenant: string;
  /** "" for the tenant as a whole. */
  target: string;
  recent: TrafficFigures;
  total: TrafficFigures;
  recentWindowMs: number;
}

export interface TrafficStats {
  record(outcome: ExchangeOutcome): void;
  /**
   * The tenant total first (target ""), then one entry per target that has traffic, sorted by target name.
   * With `target`, only that target's entry (all zeros if it has no traffic yet). Unknown tenant: just a zero total.
   */
  snapshot(tenant: string, target?: string): StatsSnapshot[];
  /** Drops everything about a tenant (it was deleted). */
  forgetTenant(tenant: string): void;
}

export interface TrafficStatsOptions {
  /** Length of the "recent" window (default 300_000 = 5 minutes). */
  windowMs?: number;
  /** Sub-windows the recent window is kept in (default 30); older ones fall out as time passes. */
  slots?: number;
  /** Clock, for tests (default Date.now). */
  now?: () => number;
}

/** What a TrafficStats holds, for tests and diagnostics (see trafficStatsCensus). */
export interface TrafficStatsCensus {
  /** (tenant, target) pairs with traffic. */
  series: number;
  /** Slot counters allocated across all series; each has one histogram. */
  slotHistograms: number;
  /** Non-empty histogram buckets across totals and slots. */
  histogramBuckets: number;
}

/** Running figures of one series over one span of time. */
interface Counters {
  requests: number;
  clientErrors: number;
  serverErrors: number;
  // A Map, not an object: codes never collide with Object.prototype keys.
  relayErrors: Map<string, number>;
  bytesIn: number;
  bytesOut: number;
  latency: LatencyHistogram;
}

/** One sub-window of the ring; `epoch` is floor(time / slotMs) of what it holds. */
interface Slot extends Counters {
  epoch: number;
}

/** One (tenant, target): everything since start, plus the ring of recent slots. */
interface Series {
  total: Counters;
  /** Allocated lazily per position, then reused forever. */
  ring: (Slot | undefined)[];
}

function newCounters(): Counters {
  return {
    requests: 0,
    clientErrors: 0,
    serverErrors: 0,
    relayErrors: new Map(),
    bytesIn: 0,
    bytesOut: 0,
    latency: new LatencyHistogram(),
  };
}

function clear(c: Counters): void {
  c.requests = 0;
  c.clientErrors = 0;
  c.serverErrors = 0;
  c.relayErrors.clear();
  c.bytesIn = 0;
  c.bytesOut = 0;
  c.latency.reset();
}

function count(c: Counters, o: ExchangeOutcome): void {
  c.requests++;
  if (o.code !== undefined) c.relayErrors.set(o.code, (c.relayErrors.get(o.code) ?? 0) + 1);
  else if (o.status >= 400 && o.status <= 499) c.clientErrors++;
  else if (o.status >= 500 && o.status <= 599) c.serverErrors++;
  c.bytesIn += o.bytesIn;
  c.bytesOut += o.bytesOut;
  c.latency.add(o.durationMs);
}

function addInto(acc: Counters, c: Counters): void {
  acc.requests += c.requests;
  acc.clientErrors += c.clientErrors;
  acc.serverErrors += c.serverErrors;
  for (const [code, n] of c.relayErrors) acc.relayErrors.set(code, (acc.relayErrors.get(code) ?? 0) + n);
  acc.bytesIn += c.bytesIn;
  acc.bytesOut += c.bytesOut;
  acc.latency.merge(c.latency);
}

function figures(c: Counters): TrafficFigures {
  // Sorted codes keep the output stable for diffing and tests.
  const relayErrors = Object.fromEntries([...c.relayErrors].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return {
    requests: c.requests,
    clientErrors: c.clientErrors,
    serverErrors: c.serverErrors,
    relayErrors,
    bytesIn: c.bytesIn,
    bytesOut: c.bytesOut,
    latencyP50Ms: c.latency.quantile(0.5),
    latencyP95Ms: c.latency.quantile(0.95),
    latencyP99Ms: c.latency.quantile(0.99),
  };
}

// Census access without widening the TrafficStats interface other code depends on.
const censuses = new WeakMap<TrafficStats, () => TrafficStatsCensus>();

/** Counts what `stats` holds in memory; for tests and diagnostics. */
export function trafficStatsCensus(stats: TrafficStats): TrafficStatsCensus {
  const census = censuses.get(stats);
  if (!census) throw new Error("not a TrafficStats made by createTrafficStats");
  return census();
}

export function createTrafficStats(options: TrafficStatsOptions = {}): TrafficStats {
  const windowMs = options.windowMs ?? 300_000;
  const slots = options.slots ?? 30;
  const now = options.now ?? Date.now;
  if (!(windowMs > 0)) throw new RangeError(`windowMs must be positive, got ${windowMs}`);
  if (!Number.isInteger(slots) || slots < 1) throw new RangeError(`slots must be a positive integer, got ${slots}`);
  const slotMs = windowMs / slots;
  const tenants = new Map<string, Map<string, Series>>();
  // The newest epoch seen: a wall clock stepped backwards (NTP) then counts
  // into the newest slot instead of wiping a slot that holds newer traffic.
  let newestEpoch = -Infinity;

  function epochNow(): number {
    const epoch = Math.floor(now() / slotMs);
    if (epoch > newestEpoch) newestEpoch = epoch;
    return newestEpoch;
  }

  function slotFor(series: Series, epoch: number): Slot {
    const position = ((epoch % slots) + slots) % slots;
    let slot = series.ring[position];
    if (!slot) {
      slot = { ...newCounters(), epoch };
      series.ring[position] = slot;
    } else if (slot.epoch !== epoch) {
      clear(slot);
      slot.epoch = epoch;
    }
    return slot;
  }

  /** Adds the slots of `series` still inside the window ending at `epoch`. */
  function addRecent(acc: Counters, series: Series, epoch: number): void {
    for (const slot of series.ring) {
      if (slot && slot.epoch > epoch - slots && slot.epoch <= epoch) addInto(acc, slot);
    }
  }

  function entry(tenant: string, target: string, recent: Counters, total: Counters): StatsSnapshot {
    return { tenant, target, recent: figures(recent), total: figures(total), recentWindowMs: windowMs };
  }

  function targetEntry(tenant: string, target: string, series: Series | undefined, epoch: number): StatsSnapshot {
    const recent = newCounters();
    if (series) addRecent(recent, series, epoch);
    return entry(tenant, target, recent, series?.total ?? newCounters());
  }

  const stats: TrafficStats = {
    record(outcome) {
      let targets = tenants.get(outcome.tenant);
      if (!targets) tenants.set(outcome.tenant, (targets = new Map()));
      let series = targets.get(outcome.target);
      if (!series) targets.set(outcome.target, (series = { total: newCounters(), ring: new Array(slots) }));
      count(series.total, outcome);
      count(slotFor(series, epochNow()), outcome);
    },

    snapshot(tenant, target) {
      const epoch = epochNow();
      const targets = tenants.get(tenant);
      // target "" names the tenant as a whole, so it answers with the total alone.
      if (target !== undefined && target !== "") return [targetEntry(tenant, target, targets?.get(target), epoch)];
      const recent = newCounters();
      const total = newCounters();
      const names = targets ? [...targets.keys()].sort() : [];
      const perTarget: StatsSnapshot[] = [];
      for (const name of names) {
        const series = targets!.get(name)!;
        addRecent(recent, series, epoch);
        addInto(total, series.total);
        if (target === undefined) perTarget.push(targetEntry(tenant, name, series, epoch));
      }
      return [entry(tenant, "", recent, total), ...perTarget];
    },

    forgetTenant(tenant) {
      tenants.delete(tenant);
    },
  };

  censuses.set(stats, () => {
    const census: TrafficStatsCensus = { series: 0, slotHistograms: 0, histogramBuckets: 0 };
    for (const targets of tenants.values()) {
      for (const series of targets.values()) {
        census.series++;
        census.histogramBuckets += series.total.latency.bucketsInUse;
        for (const slot of series.ring) {
          if (!slot) continue;
          census.slotHistograms++;
          census.histogramBuckets += slot.latency.bucketsInUse;
        }
      }
    }
    return census;
  });
  return stats;
}
