import { createWriteStream, type WriteStream } from "node:fs";
import { type Frame, type RequestHead, ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import type { Exchange } from "../../core/exchange/exchange.js";
import type { Logger } from "../../core/logger.js";

/** Sees one exchange's frames both ways, and its end. */
export interface ExchangeTap {
  /** A frame from the connector towards the client. */
  sent(frame: Frame): void;
  /** A frame from the client towards the target. */
  received(frame: Frame): void;
  closed(ex: Exchange): void;
}

/** One line of the audit log (JSON, one per exchange). */
export interface AuditRecord {
  /** When the request head arrived, ISO 8601. */
  time: string;
  id: string;
  target: string;
  method: string;
  /** Below the target's base path, with the query. */
  path: string;
  /** Response status; 0 when the exchange ended before a response head. */
  status: number;
  /** Request body bytes from the client. */
  bytesIn: number;
  /** Response body bytes to the client. */
  bytesOut: number;
  durationMs: number;
  /** The client's address as the relay reported it. */
  client: string;
  /**
   * "ok"; a refusal by the connector: "forbidden" (the target's allowlist), "identity_required",
   * "identity_invalid" or "identity_unavailable" (X-Ferry-Identity missing, not valid, or not checkable);
   * or "reset: CODE".
   */
  outcome: string;
}

export interface ExchangeAudit {
  /** Starts recording one exchange. */
  observe(head: RequestHead, exchangeKey: string): ExchangeTap;
  /** Marks an exchange the connector refused itself, with the outcome its line records. */
  refused(ex: Exchange, outcome: string): void;
  /** Reopens the file (after logrotate moved it away). */
  reopen(): void;
  close(): Promise<void>;
}

/** Lines held in memory while the disk lags, at most; beyond it lines are dropped and counted. */
const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;

/**
 * The on-prem admin's own record of what came in (--audit-log): a JSON line
 * per exchange, appended through a write stream so the event loop never waits
 * for the disk. The file is created 0600 (it holds client addresses and paths).
 */
export function createExchangeAudit(file: string, log: Logger): ExchangeAudit {
  let stream = open();
  let dropped = 0;
  const refused = new WeakMap<Exchange, string>();

  function open(): WriteStream {
    const s = createWriteStream(file, { flags: "a", mode: 0o600 });
    s.on("error", (err) => log.error({ err: err.message, file }, "cannot write the audit log"));
    return s;
  }

  const write = (record: AuditRecord) => {
    if (stream.writableLength > MAX_BUFFERED_BYTES) {
      if (dropped++ === 0) log.warn({ file }, "the audit log cannot keep up; dropping lines");
      return;
    }
    if (dropped > 0) {
      log.warn({ file, dropped }, "audit log lines were dropped");
      dropped = 0;
    }
    stream.write(`${JSON.stringify(record)}\n`);
  };

  return {
    observe(head, exchangeKey) {
      const started = Date.now();
      let status = 0;
      let bytesIn = 0;
      let bytesOut = 0;
      return {
        sent(frame) {
          const k = frame.kind;
          if (k.case === "data") bytesOut += k.value.chunk.length;
          else if (k.case === "responseHead") status = k.value.status;
        },
        received(frame) {
          if (frame.kind.case === "data") bytesIn += frame.kind.value.chunk.length;
        },
        closed(ex) {
          const reset = ex.isReset;
          write({
            time: new Date(started).toISOString(),
            id: exchangeKey,
            target: head.target,
            method: head.method,
            path: head.path + (head.query ? `?${head.query}` : ""),
            status,
            bytesIn,
            bytesOut,
            durationMs: Date.now() - started,
            client: head.clientAddress,
            outcome: refused.get(ex) ?? (reset ? `reset: ${ResetCode[reset.code] ?? reset.code}` : "ok"),
          });
        },
      };
    },
    refused: (ex, outcome) => void refused.set(ex, outcome),
    reopen() {
      const old = stream;
      stream = open();
      old.end();
    },
    close: () => new Promise<void>((resolve) => stream.end(resolve)),
  };
}
