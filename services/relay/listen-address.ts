import { FerryError } from "../../core/errors.js";

/** Parses "HOST:PORT", "[v6]:PORT" or ":PORT" (all interfaces). */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw new FerryError("invalid_argument", "invalid_listen", `--listen "${text}" must be HOST:PORT, e.g. 127.0.0.1:8080 or :8080`);
  }
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
}
