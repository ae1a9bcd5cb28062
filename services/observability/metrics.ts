import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { TunnelRegistry } from "../tunnel/tunnel-registry.js";
import type { ExchangeRecord } from "./exchange-record.js";
import type { PeerFaults } from "../limits/peer-faults.js";

export interface Metrics {
  /** Counts one finished exchange. */
  observe(record: ExchangeRecord): void;
  /** Counts a sign-in at the relay, or a sign-out (services/login). */
  login(tenant: string, outcome: "success" | "refused" | "failed" | "logout"): void;
  /** Drops every series of a deleted tenant. */
  forgetTenant(tenant: string): Promise<void>;
  /** The Prometheus text exposition. */
  render(): Promise<string>;
  readonly contentType: string;
}

/**
 * Prometheus metrics (prom-client), all prefixed ferry_. Per-request work is
 * a few label lookups; gauges about tunnels are read from the registry at
 * scrape time, so nothing is updated on the hot path for them.
 */
export function createMetrics(deps: { registry: TunnelRegistry; activeFor(tenant: string): number; faults: PeerFaults }): Metrics {
  const register = new Registry();
  collectDefaultMetrics({ register, prefix: "ferry_" });
  const requests = new Counter({
    name: "ferry_requests_total",
    help: "Exchanges finished, by tenant, target and status class (1xx..5xx; 'none' when no status was sent)",
    labelNames: ["tenant", "target", "status_class"] as const,
    registers: [register],
  });
  const relayErrors = new Counter({
    name: "ferry_relay_errors_total",
    help: "Exchanges Ferry failed itself (routing, tunnel, timeouts, limits), by tenant and error code",
    labelNames: ["tenant", "code"] as const,
    registers: [register],
  });
  const duration = new Histogram({
    name: "ferry_request_duration_seconds",
    help: "Time from request to the end of the response, by tenant and target",
    labelNames: ["tenant", "target"] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers: [register],
  });
  const bytes = new Counter({
    name: "ferry_body_bytes_total",
    help: "Body bytes carried, by tenant, target and direction (in: from clients, out: to clients)",
    labelNames: ["tenant", "target", "direction"] as const,
    registers: [register],
  });
  const accessDenied = new Counter({
    name: "ferry_access_denied_total",
    help: "Requests refused by the tenant's access policy, by tenant and reason (ip_denied, credential_missing, rate_limited, ...)",
    labelNames: ["tenant", "reason"] as const,
    registers: [register],
  });
  const logins = new Counter({
    name: "ferry_logins_total",
    help: "Sign-ins at the relay by tenant and outcome (success, refused by the rule, failed, logout)",
    labelNames: ["tenant", "outcome"] as const,
    registers: [register],
  });
  const perTenant = <T extends string>(read: (tenant: string, tunnels: ReturnType<TunnelRegistry["tunnels"]>) => number) =>
    function (this: Gauge<T>) {
      this.reset();
      const byTenant = new Map<string, ReturnType<TunnelRegistry["tunnels"]>>();
      for (const t of deps.registry.tunnels()) {
        const list = byTenant.get(t.info.tenant) ?? [];
        list.push(t);
        byTenant.set(t.info.tenant, list);
      }
      for (const [tenant, tunnels] of byTenant) this.set({ tenant } as never, read(tenant, tunnels));
    };
  new Gauge({
    name: "ferry_tunnels_connected",
    help: "Live tunnel streams from connectors, by tenant",
    labelNames: ["tenant"] as const,
    registers: [register],
    collect: perTenant((_, tunnels) => tunnels.length),
  });
  new Gauge({
    name: "ferry_connectors_connected",
    help: "Connectors with at least one live tunnel, by tenant",
    labelNames: ["tenant"] as const,
    registers: [register],
    collect: perTenant((_, tunnels) => new Set(tunnels.map((t) => t.info.connectorId)).size),
  });
  new Gauge({
    name: "ferry_exchanges_in_flight",
    help: "Exchanges in progress through the gateway, by tenant",
    labelNames: ["tenant"] as const,
    registers: [register],
    collect: perTenant((tenant) => deps.activeFor(tenant)),
  });
  new Gauge({
    name: "ferry_tunnel_ping_rtt_seconds",
    help: "Round-trip time of the latest keepalive ping, the slowest tunnel of each tenant",
    labelNames: ["tenant"] as const,
    registers: [register],
    collect: perTenant((_, tunnels) => Math.max(0, ...tunnels.map((t) => t.keepalive.lastRttMs ?? 0)) / 1000),
  });

  // Counters kept by PeerFaults (shared with the server, which exists before the relay), read at scrape time.
  new Counter({
    name: "ferry_peer_faults_total",
    help: "Malformed or hostile input that ended one exchange, stream or connection and nothing else, by source (client, connector, target, cluster, store) and reason",
    labelNames: ["source", "reason"] as const,
    registers: [register],
    collect() {
      this.reset();
      for (const f of deps.faults.faults().values()) this.inc({ source: f.source, reason: f.reason }, f.count);
    },
  });
  new Counter({
    name: "ferry_limit_refusals_total",
    help: "Connections, streams, exchanges, tunnels or calls refused or cut by a resource limit, by limit",
    labelNames: ["limit"] as const,
    registers: [register],
    collect() {
      this.reset();
      for (const [limit, n] of deps.faults.limits()) this.inc({ limit }, n);
    },
  });

  return {
    observe(r) {
      if (!r.tenant) return; // not addressed to a tenant (a bad path): nothing to attribute
      const statusClass = r.status >= 100 && r.status < 600 ? `${Math.floor(r.status / 100)}xx` : "none";
      requests.inc({ tenant: r.tenant, target: r.target, status_class: statusClass });
      if (r.code) relayErrors.inc({ tenant: r.tenant, code: r.code });
      duration.observe({ tenant: r.tenant, target: r.target }, r.durationMs / 1000);
      if (r.bytesIn) bytes.inc({ tenant: r.tenant, target: r.target, direction: "in" }, r.bytesIn);
      if (r.bytesOut) bytes.inc({ tenant: r.tenant, target: r.target, direction: "out" }, r.bytesOut);
      if (r.access && !r.access.granted) accessDenied.inc({ tenant: r.tenant, reason: r.access.reason });
    },
    login(tenant, outcome) {
      logins.inc({ tenant, outcome });
    },
    async forgetTenant(tenant) {
      for (const metric of [requests, relayErrors, duration, bytes, accessDenied, logins] as Array<Counter<string> | Histogram<string>>) {
        const { values } = await metric.get();
        const seen = new Set<string>();
        for (const v of values) {
          if (v.labels.tenant !== tenant) continue;
          // Histograms list each bucket; the series is the labels without "le".
          const { le: _le, ...labels } = v.labels as Record<string, string | number>;
          const key = JSON.stringify(labels);
          if (seen.has(key)) continue;
          seen.add(key);
          metric.remove(labels as Record<string, string>);
        }
      }
    },
    render: () => register.metrics(),
    contentType: register.contentType,
  };
}
