import type { AccessDenialReason, AccessGranted } from "../access/access-control.js";
import type { ExchangeSummary } from "../../gen/ferry/admin/v1/admin_service_pb.js";
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
  capture?: CaptureSink;
}

/** Where a capture gets a finished exchange's summary (services/traffic/capture-store.ts); returns the capture's id. */
export interface CaptureSink {
  finish(summary: ExchangeSummary): string;
}

/** Watchers of finished exchanges (services/traffic/live-traffic.ts): `wanted` is false unless someone watches. */
export interface SummarySink {
  readonly wanted: boolean;
  publish(summary: ExchangeSummary): void;
}

/** The access policy's word on one request, without anything secret. */
export type AccessOutcome =
  | { granted: true; rule?: string; method: AccessGranted["method"]; subject: string }
  | { granted: false; rule: string; reason: AccessDenialReason };
