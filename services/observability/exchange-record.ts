import type { ExchangeOutcome } from "./traffic-stats.js";

/** Everything known about one finished exchange: for statistics, metrics, the log and the audit trail. */
export interface ExchangeRecord extends ExchangeOutcome {
  /** Exchange id (hex), or the request id when no exchange was opened. */
  exchangeId: string;
  requestId: string;
  method: string;
  /** Path below the target (never the query: it may carry secrets). */
  path: string;
  clientAddress: string;
}
