/**
 * Sets `key` as the newest entry of `map` (a Map keeps insertion order) and
 * drops the oldest beyond `max`: per-source and per-credential state that
 * peers create must never grow without bound, and the ones heard from last
 * are the ones worth keeping.
 */
export function setNewest<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  for (const oldest of map.keys()) {
    if (map.size <= max) break;
    map.delete(oldest);
  }
}

/** A token bucket's tokens after refilling at `perMs` a millisecond since `at`, capped at `capacity`. */
export function refill(bucket: { tokens: number; at: number }, capacity: number, perMs: number, now: number): number {
  bucket.tokens = Math.min(capacity, bucket.tokens + (now - bucket.at) * perMs);
  bucket.at = now;
  return bucket.tokens;
}
