import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";

export function when(t: Timestamp | undefined): string {
  if (!t) return "—";
  return new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6)).toLocaleString();
}

export function ms(d: Duration | undefined): number {
  return d ? Number(d.seconds) * 1000 + d.nanos / 1e6 : 0;
}

export function duration(d: Duration | undefined): string {
  if (!d) return "—";
  const v = ms(d);
  return v < 1000 ? `${v.toFixed(v < 10 ? 1 : 0)} ms` : `${(v / 1000).toFixed(2)} s`;
}

export function bytes(n: bigint | number): string {
  const v = Number(n);
  if (v < 1024) return `${v} B`;
  if (v < 1024 * 1024) return `${(v / 1024).toFixed(1)} KiB`;
  return `${(v / 1024 / 1024).toFixed(1)} MiB`;
}

/** A body as text when it is printable UTF-8, else as hex (first 1 KiB). */
export function bodyText(body: Uint8Array): string {
  if (body.length === 0) return "(empty)";
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(body);
    if (!/[\x00-\x08\x0e-\x1f]/.test(text)) return text;
  } catch {
    // not UTF-8: shown as hex
  }
  return Array.from(body.subarray(0, 1024), (b) => b.toString(16).padStart(2, "0")).join(" ");
}
