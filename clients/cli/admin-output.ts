import { type DescMessage, type MessageShape, toJson } from "@bufbuild/protobuf";
import { type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";
import type { Opts } from "./admin-verbs.js";

/** What `ferry admin` prints: proto JSON with --json, else the human form. */
export function print<D extends DescMessage>(o: Opts, schema: D, message: MessageShape<D>, human: () => string): void {
  out(o.json ? toJson(schema, message) : human());
}

export function out(value: unknown): void {
  process.stdout.write(`${typeof value === "string" ? value : JSON.stringify(value, null, 2)}\n`);
}

export function when(ts: Timestamp | undefined): string {
  return ts ? timestampDate(ts).toISOString().replace(/\.\d+Z$/, "Z") : "";
}

/** A key's (or token's) state for a table: valid, revoked TIME, expires TIME, expired TIME. */
export function keyStatus(k: { revokeTime?: Timestamp; expireTime?: Timestamp }): string {
  if (k.revokeTime) return `revoked ${when(k.revokeTime)}`;
  if (k.expireTime) return `${timestampDate(k.expireTime) < new Date() ? "expired" : "expires"} ${when(k.expireTime)}`;
  return "valid";
}

/** Left-aligned columns, two spaces apart. */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n");
}
