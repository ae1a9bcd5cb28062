import type { AccessDenialReason, AccessGranted } from "../access/access-control.js";
import type { CaptureTap } from "../traffic/capture-store.js";
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
  /** What the tenant's access policy decided; undefined when the tenant has none (or the request never got that far). */
  access?: AccessOutcome;
  /** Set when a capture records this exchange: the observer hands it the summary. */
  capture?: CaptureTap;
}

/** The access policy's word on one request, without anything secret. */
export type AccessOutcome =
  | { granted: true; rule?: string; method: AccessGranted["method"]; subject: string }
  | { granted: false; rule: string; reason: AccessDenialReason };
