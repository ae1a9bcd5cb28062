/** The value at quantile `q` (0..1) of ascending `sorted`, or NaN when there is none. */
export function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

/** The middle value (of an even count, the upper of the two middle ones). */
export function median(values: number[]): number {
  return medianBy(values, (v) => v);
}

/** The item whose `key` is the median: a run keeps its other figures with it, so they stay consistent. */
export function medianBy<T>(items: T[], key: (item: T) => number): T {
  const sorted = [...items].sort((a, b) => key(a) - key(b));
  return sorted[Math.floor(sorted.length / 2)]!;
}
