import type { Duration } from "@bufbuild/protobuf/wkt";
import { FerryError } from "./errors.js";

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parses "250ms", "30s", "5m", "2h", "1h30m" or a bare number of seconds into
 * milliseconds. Throws a message naming the input when it is not a duration.
 */
export function parseDuration(text: string): number {
  const trimmed = text.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const parts = [...trimmed.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== trimmed) {
    throw new FerryError("invalid_argument", "invalid_duration", `"${text}" is not a duration (examples: 500ms, 30s, 5m, 2h)`);
  }
  return Math.round(parts.reduce((sum, p) => sum + Number(p[1]) * UNITS[p[2]!]!, 0));
}

/** Human form of a duration in milliseconds, e.g. 1500 -> "1.5s". */
export function formatDuration(ms: number): string {
  // Thresholds sit where rounding would carry into the next unit ("60s" is "1m").
  if (ms < 999.5) return `${Math.round(ms)}ms`;
  if (ms < 59_950) return `${+(ms / 1000).toFixed(1)}s`;
  if (ms < 3_597_000) return `${+(ms / 60_000).toFixed(1)}m`;
  return `${+(ms / 3_600_000).toFixed(1)}h`;
}

/** A non-negative Duration (negative input counts as zero: every use here is a timeout). */
export function durationFromMs(ms: number): Duration {
  ms = Math.max(0, ms);
  const seconds = Math.floor(ms / 1000);
  return { $typeName: "google.protobuf.Duration", seconds: BigInt(seconds), nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

export function msFromDuration(d: Duration | undefined): number | undefined {
  if (!d) return undefined;
  return Number(d.seconds) * 1000 + Math.round(d.nanos / 1e6);
}
