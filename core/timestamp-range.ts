import type { Timestamp } from "@bufbuild/protobuf/wkt";

/**
 * A Timestamp (seconds and nanos straight from the wire, or from a stored
 * record) as milliseconds, when it is well formed and within [min, max];
 * otherwise undefined.
 */
export function timestampInRange(ts: Pick<Timestamp, "seconds" | "nanos">, minMs: number, maxMs: number): number | undefined {
  if (!Number.isInteger(ts.nanos) || ts.nanos < 0 || ts.nanos > 999_999_999) return undefined;
  // Compare as bigint first: Number(seconds) of a huge int64 loses the digits that make it out of range.
  const seconds = BigInt(ts.seconds);
  if (seconds < BigInt(Math.floor(minMs / 1000)) - 1n || seconds > BigInt(Math.ceil(maxMs / 1000)) + 1n) return undefined;
  const ms = Number(seconds) * 1000 + Math.floor(ts.nanos / 1_000_000);
  return ms >= minMs && ms <= maxMs ? ms : undefined;
}
