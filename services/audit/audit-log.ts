import { createWriteStream, type WriteStream } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../../clients/sdk/logger.js";

/** One audited event: who did what to which object, and how it ended. */
export interface AuditEvent {
  /** Dotted verb, e.g. "tenant.create", "connector.refused". */
  action: string;
  /** Who: "admin:<token id>", "connector:<key id>" or "system". */
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
 * log at info level. Querying and retention come with the full admin API.
 */
export function createAuditLog(dir: string, log: Logger): AuditLog {
  const stream: WriteStream = createWriteStream(join(dir, "audit.jsonl"), { flags: "a", mode: 0o600 });
  stream.on("error", (err) => log.error({ err }, "audit log write failed"));
  return {
    record(event) {
      const line = { time: new Date().toISOString(), ...event };
      stream.write(`${JSON.stringify(line)}\n`);
      log.info({ audit: line }, event.action);
    },
    close: () => new Promise((resolve) => stream.end(resolve)),
  };
}
