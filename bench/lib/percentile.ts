/** The value at quantile `q` (0..1) of ascending `sorted`, or NaN when there is none. */
export function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}
