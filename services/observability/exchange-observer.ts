import type { Logger } from "../../clients/sdk/logger.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { Catalog } from "../state/catalog.js";
import type { TrafficStats } from "../stats/traffic-stats.js";
import type { ExchangeRecord } from "./exchange-record.js";
import type { Metrics } from "./metrics.js";

/** Codes of requests that never reached a real target: their target name is the client's invention. */
const NO_TARGET = new Set(["target_not_found", "target_not_allowed", "bad_path"]);

export interface ObserverDeps {
  catalog: Catalog;
  stats: TrafficStats;
  metrics: Metrics;
  log: Logger;
  audit: AuditLog;
  /** Write a summary of every request to the audit trail. */
  auditRequests: boolean;
}

/**
 * Where a finished exchange is reported: one log line, statistics, metrics,
 * and a request summary in the audit trail. Only existing tenants and real
 * targets get statistics and labelled series, so clients cannot grow them
 * without bound by inventing names.
 */
export function createExchangeObserver(deps: ObserverDeps): (record: ExchangeRecord) => void {
  return (r) => {
    const durationMs = Math.round(r.durationMs * 10) / 10;
    deps.log.info(
      {
        exchange: r.exchangeId,
        requestId: r.requestId,
        tenant: r.tenant,
        target: r.target,
        method: r.method,
        status: r.status,
        code: r.code,
        bytesIn: r.bytesIn,
        bytesOut: r.bytesOut,
        durationMs,
      },
      "exchange",
    );
    if (!r.tenant || !deps.catalog.getTenant(r.tenant)) return;
    const known = r.code === undefined || !NO_TARGET.has(r.code);
    deps.metrics.observe(known ? r : { ...r, target: "" });
    if (known) deps.stats.record(r);
    if (deps.auditRequests) {
      deps.audit.recordRequest({
        action: "request",
        actor: `client:${r.clientAddress}`,
        tenant: r.tenant,
        details: {
          exchange: r.exchangeId,
          requestId: r.requestId,
          target: r.target,
          method: r.method,
          path: r.path,
          status: r.status,
          ...(r.code ? { code: r.code } : {}),
          bytesIn: r.bytesIn,
          bytesOut: r.bytesOut,
          durationMs,
        },
      });
    }
  };
}
