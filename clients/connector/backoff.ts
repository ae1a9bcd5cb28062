/**
 * Reconnect delays: capped exponential backoff with full jitter (AWS
 * architecture blog, "Exponential Backoff And Jitter"). Full jitter spreads a
 * herd of connectors that all lost the same relay at once.
 */
export interface BackoffOptions {
  /** Delay ceiling of the first retry, before jitter. */
  minMs: number;
  /** Ceiling of every delay. */
  maxMs: number;
  /** A connection that lasted this long counts as stable and resets the sequence. */
  stableMs?: number;
  random?: () => number;
}

export interface Backoff {
  /** The next delay in milliseconds. */
  next(): number;
  /** Call when a connection was established; pass how long it lasted when it ends. */
  succeeded(livedMs: number): void;
  readonly attempt: number;
}

export function createBackoff(options: BackoffOptions): Backoff {
  const random = options.random ?? Math.random;
  const stableMs = options.stableMs ?? 10_000;
  let attempt = 0;
  return {
    next() {
      const ceiling = Math.min(options.maxMs, options.minMs * 2 ** Math.min(attempt, 30));
      attempt++;
      return Math.round(random() * ceiling);
    },
    succeeded(livedMs) {
      if (livedMs >= stableMs) attempt = 0;
    },
    get attempt() {
      return attempt;
    },
  };
}
