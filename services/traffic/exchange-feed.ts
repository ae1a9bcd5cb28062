import type { ExchangeSummary } from "../../gen/ferry/admin/v1/admin_service_pb.js";
import { FerryError } from "../../core/errors.js";

/** Which exchanges a watcher wants; empty fields match everything. */
export interface FeedFilter {
  tenant: string;
  target: string;
  /** "2xx".."5xx", an exact status ("404"), "error" (Ferry failed it), or "". */
  status: string;
}

/** What a watcher gets next: the exchanges queued for it, oldest first, and how many it missed because it read too slowly. */
export interface FeedItem {
  exchanges: ExchangeSummary[];
  dropped: number;
}

export interface ExchangeFeed {
  /** Someone watches on this node: only then does the observer build summaries. */
  readonly watched: boolean;
  /** Hands a finished exchange to every watcher whose filter it matches; never blocks, never throws. */
  publish(summary: ExchangeSummary): void;
  /**
   * The exchanges matching `filter` from now on, until `signal` aborts. An item without an exchange comes at once
   * (the watch is in place) and after `keepAliveMs` without one, so proxies and browsers keep an idle stream open.
   * Throws resource_exhausted when this node has `maxWatchers` already.
   */
  watch(filter: FeedFilter, signal: AbortSignal): AsyncGenerator<FeedItem>;
  /** Called whenever the number of watchers changes (a cluster node announces its interest). */
  onWatchers(listener: (count: number) => void): void;
}

export interface FeedOptions {
  /** Exchanges queued for one watcher that does not read; beyond it they are dropped and counted (default 256). */
  queueLength?: number;
  /** Watchers on this node at once (default 64). */
  maxWatchers?: number;
  keepAliveMs?: number;
}

const STATUS_FILTER = /^(?:[1-5]xx|[1-5][0-9]{2}|error)$/;

/** Refuses a status filter WatchExchanges would never match. */
export function checkStatusFilter(status: string): void {
  if (status !== "" && !STATUS_FILTER.test(status)) {
    throw new FerryError("invalid_argument", "invalid_status_filter", `status "${status.slice(0, 20)}" is not 2xx..5xx, a status such as 404, or "error"`);
  }
}

export function matches(f: FeedFilter, s: ExchangeSummary): boolean {
  if (f.tenant !== "" && f.tenant !== s.tenant) return false;
  if (f.target !== "" && f.target !== s.target) return false;
  if (f.status === "") return true;
  if (f.status === "error") return s.code !== "";
  if (f.status.endsWith("xx")) return Math.floor(s.status / 100) === Number(f.status[0]);
  return s.status === Number(f.status);
}

interface Watcher {
  filter: FeedFilter;
  queue: ExchangeSummary[];
  dropped: number;
  wake: (() => void) | undefined;
}

/**
 * This node's live feed of finished exchanges. Each watcher has its own short
 * queue: a browser that stops reading (its stream's flow control holds the
 * generator) loses exchanges, counted and told, and costs at most its queue;
 * the relay never waits for a watcher.
 */
export function createExchangeFeed(options: FeedOptions = {}): ExchangeFeed {
  const queueLength = options.queueLength ?? 256;
  const maxWatchers = options.maxWatchers ?? 64;
  const keepAliveMs = options.keepAliveMs ?? 15_000;
  const watchers = new Set<Watcher>();
  const listeners: Array<(count: number) => void> = [];
  const changed = () => {
    for (const l of listeners) l(watchers.size);
  };

  return {
    get watched() {
      return watchers.size > 0;
    },
    publish(summary) {
      for (const w of watchers) {
        if (!matches(w.filter, summary)) continue;
        if (w.queue.length >= queueLength) w.dropped++;
        else w.queue.push(summary);
        w.wake?.();
      }
    },
    async *watch(filter, signal) {
      if (watchers.size >= maxWatchers) {
        throw new FerryError("resource_exhausted", "too_many_watchers", `this node serves ${maxWatchers} traffic watchers already; retry later`);
      }
      const w: Watcher = { filter, queue: [], dropped: 0, wake: undefined };
      watchers.add(w);
      changed();
      try {
        // At once: the caller knows it is watching before the first exchange comes.
        yield { exchanges: [], dropped: 0 };
        while (!signal.aborted) {
          if (w.queue.length === 0) await nextEvent(w, signal, keepAliveMs);
          if (signal.aborted) return;
          // All that waited, in one message: a busy relay writes once per read, not once per exchange.
          const exchanges = w.queue;
          w.queue = [];
          const dropped = w.dropped;
          w.dropped = 0;
          yield { exchanges, dropped };
        }
      } finally {
        watchers.delete(w);
        changed();
      }
    },
    onWatchers(listener) {
      listeners.push(listener);
    },
  };
}

/** Resolves when the watcher has something, the keep-alive is due, or the call ends. */
function nextEvent(w: Watcher, signal: AbortSignal, keepAliveMs: number): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      w.wake = undefined;
      resolve();
    };
    const timer = setTimeout(done, keepAliveMs);
    signal.addEventListener("abort", done, { once: true });
    w.wake = done;
  });
}
