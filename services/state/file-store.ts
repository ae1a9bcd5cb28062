import type { JsonValue } from "@bufbuild/protobuf";
import { closeSync, fsyncSync, openSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomically } from "../../core/atomic-file.js";
import { FerryError } from "../../core/errors.js";
import type { KvChange, KvStore } from "./kv-store.js";

const FORMAT = "ferry-state/1";

/**
 * KvStore in one JSON file, rewritten atomically on every change (write a
 * temporary file, fsync it, rename it over the old one, fsync the directory),
 * so a crash leaves either the old or the new state, never a torn file. Admin
 * changes are rare, so rewriting the whole file is cheap. A lock file keeps a
 * second relay from sharing the directory.
 */
export async function openFileStore(dir: string): Promise<KvStore> {
  const lock = await lockDataDir(dir);
  const file = join(dir, "state.json");
  const entries = new Map<string, JsonValue>(Object.entries(readState(file)));
  const listeners = new Set<(change: KvChange) => void>();
  let writing: Promise<void> = Promise.resolve();

  const persist = (): Promise<void> => {
    const snapshot = JSON.stringify(
      { format: FORMAT, entries: Object.fromEntries([...entries].sort(([a], [b]) => (a < b ? -1 : 1))) },
      null,
      1,
    );
    // Writes are chained so the file on disk follows the order of changes.
    writing = writing.then(() => writeFileAtomically(file, snapshot, 0o600));
    return writing;
  };
  const changed = async (change: KvChange) => {
    await persist();
    for (const listener of listeners) listener(change);
  };

  return {
    get: (key) => entries.get(key),
    list: (prefix) => [...entries].filter(([k]) => k.startsWith(prefix)).sort(([a], [b]) => (a < b ? -1 : 1)),
    async put(key, value) {
      entries.set(key, value);
      await changed({ key, value });
    },
    async delete(key) {
      if (!entries.delete(key)) return;
      await changed({ key, value: undefined });
    },
    watch(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async close() {
      await writing;
      lock.release();
    },
  };
}

function readState(file: string): Record<string, JsonValue> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw e;
  }
  let parsed: { format?: string; entries?: Record<string, JsonValue> };
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch (e) {
    // Nothing in it can be trusted to be whole: refuse to start rather than serve from part of it.
    throw new FerryError("failed_precondition", "bad_state_file", `${file} is not valid JSON (${(e as Error).message}); restore it from a backup`);
  }
  // Records are checked one by one where they are used (catalog.ts): a bad one is skipped, not fatal.
  if (typeof parsed !== "object" || parsed === null || parsed.format !== FORMAT || typeof parsed.entries !== "object" || parsed.entries === null || Array.isArray(parsed.entries)) {
    throw new FerryError(
      "failed_precondition",
      "bad_state_file",
      `${file} is not a Ferry state file (format "${String(parsed?.format)}", expected "${FORMAT}", with its entries)`,
    );
  }
  return parsed.entries;
}

/**
 * Creates the data directory if needed and locks it, so no second relay (a
 * cluster node's audit files included) ever writes to it at the same time.
 */
export async function lockDataDir(dir: string): Promise<{ release(): void }> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return acquireLock(join(dir, "LOCK"));
}

/** An exclusive lock on the data directory; a lock left by a dead process is taken over. */
function acquireLock(path: string): { release(): void } {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, "wx", 0o600);
      writeFileSync(fd, String(process.pid));
      fsyncSync(fd);
      closeSync(fd);
      return {
        release: () => {
          try {
            unlinkSync(path);
          } catch {
            // already gone
          }
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const pid = Number(readFileSync(path, "utf8"));
      if (pid > 0 && isAlive(pid)) {
        throw new FerryError("failed_precondition", "data_dir_locked", `data directory is in use by process ${pid} (lock file ${path})`);
      }
      unlinkSync(path);
    }
  }
  throw new Error(`could not lock ${path}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
