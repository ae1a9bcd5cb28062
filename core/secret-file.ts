import { readFileSync, statSync } from "node:fs";
import { FerryError } from "./errors.js";

/**
 * Reads a secret (a key or token) from a file, the way systemd credentials and
 * Kubernetes secrets hand them over: the whole file, surrounding whitespace
 * dropped. A file others can read is used, with a warning: the secret is only
 * as private as its file.
 */
export function readSecretFile(path: string, what: string, warn: (line: string) => void): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8").trim();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new FerryError("invalid_argument", "invalid_config", `${what} ${path}: ${code === "ENOENT" ? "no such file" : `cannot be read (${code ?? (e as Error).message})`}`);
  }
  secretAlone(text, `${what} ${path}`);
  if (othersCanRead(path)) warn(`warning: ${what} ${path} can be read by other users; chmod 600 it`);
  return text;
}

/** Throws unless `text` (already trimmed) is one secret and nothing else; `from` says where it came from. */
export function secretAlone(text: string, from: string): string {
  if (text === "") throw new FerryError("invalid_argument", "invalid_config", `${from} is empty`);
  if (/\s/.test(text)) throw new FerryError("invalid_argument", "invalid_config", `${from} must hold the secret alone, on one line`);
  return text;
}

/** Whether users other than the owner may read `path` (never true on Windows, whose modes say nothing of it). */
export function othersCanRead(path: string): boolean {
  try {
    return process.platform !== "win32" && (statSync(path).mode & 0o077) !== 0;
  } catch {
    return false; // read a moment ago: nothing to add
  }
}

/** The warning for a secret given as a command-line argument, which every local user can see in `ps`. */
export function argvSecretWarning(flag: string, instead: string): string {
  return `warning: ${flag} puts the secret in the process list, where every local user can read it; use ${instead} instead`;
}
