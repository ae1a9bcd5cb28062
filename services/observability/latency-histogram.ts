/**
 * Latency histogram for quantile estimates, log-bucketed like DDSketch: bucket
 * i holds values in [MIN_MS * GROWTH^i, MIN_MS * GROWTH^(i+1)), so every
 * bucket is the same *relative* width and an estimate taken at a bucket's
 * geometric middle is off by at most sqrt(GROWTH) - 1 (about 2.5%), whether
 * the latency is 50 µs or 50 s. Values below MIN_MS or above MAX_MS clamp to
 * the end buckets.
 *
 * Storage is sparse (bucket index -> count): real latencies crowd into a few
 * dozen of the BUCKET_COUNT buckets, and the relay keeps thousands of these.
 * A class rather than a factory for the same reason: methods live once on the
 * prototype instead of as closures in every instance.
 */

/** Relative width of a bucket: each bucket's bounds are GROWTH times the previous one's. */
export const GROWTH = 1.05;
/** Lower edge of the first bucket; anything faster lands in it. */
export const MIN_MS = 0.01;
/** One hour: the upper edge of the last bucket is at least this. */
const HOUR_MS = 3_600_000;

const LOG_GROWTH = Math.log(GROWTH);
/** Buckets from MIN_MS up to (at least) an hour: 404 at GROWTH 1.05. */
export const BUCKET_COUNT = Math.ceil(Math.log(HOUR_MS / MIN_MS) / LOG_GROWTH);
/** Upper edge of the last bucket; longer values clamp to it. */
export const MAX_MS = MIN_MS * GROWTH ** BUCKET_COUNT;

function bucketOf(ms: number): number {
  if (!(ms > MIN_MS)) return 0;
  const i = Math.floor(Math.log(ms / MIN_MS) / LOG_GROWTH);
  return i < BUCKET_COUNT ? i : BUCKET_COUNT - 1;
}

export class LatencyHistogram {
  private readonly buckets = new Map<number, number>();
  private n = 0;
  // Exact extremes, kept so estimates never leave the observed range: a
  // histogram of identical values answers with that value, not a bucket middle.
  private lo = Infinity;
  private hi = -Infinity;

  /** How many values were added (including merged ones). */
  get count(): number {
    return this.n;
  }

  /** How many buckets hold values: the memory the histogram uses, roughly. */
  get bucketsInUse(): number {
    return this.buckets.size;
  }

  /**
   * Records one latency. Negative and NaN values count as 0 (a measurement
   * still happened, so count stays in step with the caller's request count);
   * values past MAX_MS count as MAX_MS.
   */
  add(ms: number): void {
    const v = ms > 0 ? (ms < MAX_MS ? ms : MAX_MS) : 0;
    const i = bucketOf(v);
    this.buckets.set(i, (this.buckets.get(i) ?? 0) + 1);
    this.n++;
    if (v < this.lo) this.lo = v;
    if (v > this.hi) this.hi = v;
  }

  /** Adds every value of `other` into this histogram; `other` is unchanged. */
  merge(other: LatencyHistogram): void {
    if (other.n === 0) return;
    for (const [i, c] of other.buckets) this.buckets.set(i, (this.buckets.get(i) ?? 0) + c);
    this.n += other.n;
    if (other.lo < this.lo) this.lo = other.lo;
    if (other.hi > this.hi) this.hi = other.hi;
  }

  /** Empties the histogram for reuse; cheaper than a new one on a hot path. */
  reset(): void {
    this.buckets.clear();
    this.n = 0;
    this.lo = Infinity;
    this.hi = -Infinity;
  }

  /**
   * The q-quantile (0..1, clamped) in milliseconds, by nearest rank: the
   * geometric middle of the bucket holding the ceil(q * count)-th smallest
   * value, kept within the observed min and max. 0 when empty.
   */
  quantile(q: number): number {
    if (this.n === 0) return 0;
    if (!(q > 0)) return this.lo;
    if (q >= 1) return this.hi;
    const rank = Math.max(1, Math.ceil(q * this.n));
    // Sorting a few dozen keys per query is cheaper than keeping them ordered on every add.
    const indices = [...this.buckets.keys()].sort((a, b) => a - b);
    let seen = 0;
    for (const i of indices) {
      seen += this.buckets.get(i)!;
      if (seen >= rank) {
        const middle = MIN_MS * GROWTH ** (i + 0.5);
        return Math.min(this.hi, Math.max(this.lo, middle));
      }
    }
    return this.hi; // unreachable: the counts sum to n
  }

  /** A new histogram holding every value of the given ones. */
  static merged(histograms: Iterable<LatencyHistogram>): LatencyHistogram {
    const out = new LatencyHistogram();
    for (const h of histograms) out.merge(h);
    return out;
  }
}
