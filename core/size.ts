import { FerryError } from "./errors.js";

const UNITS: Record<string, bigint> = {
  "": 1n,
  b: 1n,
  kb: 1000n,
  mb: 1000n ** 2n,
  gb: 1000n ** 3n,
  tb: 1000n ** 4n,
  kib: 1024n,
  mib: 1024n ** 2n,
  gib: 1024n ** 3n,
  tib: 1024n ** 4n,
};

/** Parses "1048576", "10MB", "1.5GiB" (case-insensitive) into bytes. */
export function parseSize(text: string): bigint {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new FerryError("invalid_argument", "invalid_size", `"${text}" is not a size (examples: 1048576, 10MB, 1.5GiB)`);
  }
  const [whole, frac = ""] = m[1]!.split(".");
  const scale = 10n ** BigInt(frac.length);
  return (BigInt(whole!) * scale + BigInt(frac || "0")) * unit / scale;
}

/** Human form of a byte count, e.g. 1500000 -> "1.5 MB". */
export function formatSize(bytes: bigint | number): string {
  const n = Number(bytes);
  if (n < 1000) return `${n} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let v = n;
  let i = -1;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${+v.toFixed(1)} ${units[i]}`;
}
