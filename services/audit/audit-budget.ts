import { statSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../../core/logger.js";
import type { PeerFaults } from "../limits/peer-faults.js";
import { createRateLimitedLog } from "../../core/rate-limited-log.js";
import { type AuditFile, type AuditFileKind, auditFileName, listAuditFiles } from "./audit-files.js";

/**
 * How much an event is worth keeping when the disk budget runs out: request
 * summaries least (anyone can send requests), connector events and refusals
 * next (a reconnect loop makes many), admin changes most.
 */
export type AuditTier = "request" | "event" | "admin";

/**
 * The share of the budget each tier may fill. Request summaries stop first,
 * so a flood of them leaves room for connector events, and those stop before
 * the end, so a reconnect loop leaves room for admin changes.
 */
const CEILING: Record<AuditTier, number> = { request: 0.9, event: 0.95, admin: 1 };

export interface AuditBudget {
  /**
   * Whether `bytes` more may be written to `day`'s file of `kind` for an event
   * of `tier`. Deletes older files to make room where the tier may (request
   * summaries only make room by deleting older request summaries). Counted as
   * used from now on, written or still buffered; a refusal is counted and logged.
   */
  admit(bytes: number, tier: AuditTier, day: string, kind: AuditFileKind): boolean;
  /** Gives back bytes admitted but not written (a failed write). */
  unwrite(name: string, bytes: number): void;
  /** Deletes a file (retention) and forgets its size. */
  delete(name: string): void;
  /** Names of the files it knows, oldest first. */
  files(): AuditFile[];
  readonly used: number;
}

/**
 * The audit directory's disk budget (limits.auditMaxBytes): it never holds
 * more. Beyond it the oldest files go first, request summaries before events;
 * today's files are never deleted, so when today alone reaches the budget new
 * events are dropped instead, by tier (see CEILING). Admin changes that do not
 * fit are still in the process log, which mirrors every one of them.
 */
export function createAuditBudget(opts: {
  dir: string;
  maxBytes: number;
  /** Closes the file if it is open, and unlinks it. */
  remove(name: string): void;
  log: Logger;
  faults?: PeerFaults;
  now: () => number;
}): AuditBudget {
  const sizes = new Map<string, AuditFile & { bytes: number }>();
  let used = 0;
  for (const f of listAuditFiles(opts.dir)) {
    let bytes = 0;
    try {
      bytes = statSync(join(opts.dir, f.name)).size;
    } catch {
      continue; // gone meanwhile
    }
    sizes.set(f.name, { ...f, bytes });
    used += bytes;
  }
  const warn = createRateLimitedLog(opts.log, opts.now);

  const forget = (name: string) => {
    used -= sizes.get(name)?.bytes ?? 0;
    sizes.delete(name);
  };
  const remove = (name: string) => {
    try {
      opts.remove(name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    forget(name);
  };

  /** Deletes files older than `day` until `need` bytes are free: request summaries first, then (unless `tier` is "request") events. */
  const makeRoom = (need: number, tier: AuditTier, day: string) => {
    const older = [...sizes.values()].filter((f) => f.day < day && (tier !== "request" || f.kind === "requests"));
    older.sort((a, b) => (a.kind !== b.kind ? (a.kind === "requests" ? -1 : 1) : a.day < b.day ? -1 : a.day > b.day ? 1 : 0));
    const deleted: string[] = [];
    for (const f of older) {
      if (need <= 0) break;
      try {
        remove(f.name);
      } catch (err) {
        opts.log.error({ err, file: f.name }, "audit file could not be deleted");
        continue;
      }
      need -= f.bytes;
      deleted.push(f.name);
    }
    if (deleted.length > 0) opts.log.info({ files: deleted, maxBytes: opts.maxBytes }, "audit files deleted to stay within limits.auditMaxBytes");
  };

  const dropped = (tier: AuditTier) => {
    opts.faults?.limited("auditMaxBytes", undefined, { quiet: true });
    warn(
      tier,
      { tier, maxBytes: opts.maxBytes, usedBytes: used },
      `audit disk budget reached: ${tier === "request" ? "request summaries are" : tier === "event" ? "connector events are" : "admin changes are"} no longer written to disk today (limits.auditMaxBytes)`,
    );
  };

  const budget: AuditBudget = {
    admit(bytes, tier, day, kind) {
      const ceiling = Math.floor(opts.maxBytes * CEILING[tier]);
      if (used + bytes > ceiling) makeRoom(used + bytes - ceiling, tier, day);
      if (used + bytes > ceiling) {
        dropped(tier);
        return false;
      }
      const name = auditFileName(day, kind);
      const f = sizes.get(name);
      if (f) f.bytes += bytes;
      else sizes.set(name, { day, kind, name, bytes });
      used += bytes;
      return true;
    },
    unwrite(name, bytes) {
      const f = sizes.get(name);
      if (!f) return;
      const back = Math.min(bytes, f.bytes);
      f.bytes -= back;
      used -= back;
    },
    delete: remove,
    files: () => [...sizes.values()].sort((a, b) => (a.day !== b.day ? (a.day < b.day ? -1 : 1) : a.kind === "events" ? -1 : 1)),
    get used() {
      return used;
    },
  };
  // A budget lowered since the last start: make room at once, today's files excepted.
  if (used > opts.maxBytes) makeRoom(used - opts.maxBytes, "admin", new Date(opts.now()).toISOString().slice(0, 10));
  return budget;
}
