import { closeSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../../clients/sdk/logger.js";

/** One audited event: who did what to which object, and how it ended. */
export interface AuditEvent {
  /** Dotted verb, e.g. "tenant.create", "connector.refused". */
  action: string;
  /** Who: "admin:<token id>", "connector:<key id>" or "anonymous". */
  actor: string;
  tenant?: string;
  /** Free-form detail (never a secret). */
  details?: Record<string, unknown>;
}

export interface AuditLog {
  record(event: AuditEvent): void;
  close(): Promise<void>;
}

/**
 * Append-only JSON lines in the data directory (audit.jsonl), mirrored to the
 * log at info level. Each event is written before record() returns, so an
 * admin call is on file by the time its caller sees the answer. (Audit events
 * are admin changes and connector sessions: rare enough for a synchronous
 * write. Querying and retention come with the full admin API.)
 */
export function createAuditLog(dir: string, log: Logger): AuditLog {
  let fd: number | undefined = openSync(join(dir, "audit.jsonl"), "a", 0o600);
  return {
    record(event) {
      const line = { time: new Date().toISOString(), ...event };
      log.info({ audit: line }, event.action);
      if (fd === undefined) return;
      try {
        writeSync(fd, `${JSON.stringify(line)}\n`);
      } catch (err) {
        log.error({ err }, "audit log write failed");
      }
    },
    async close() {
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
    },
  };
}
