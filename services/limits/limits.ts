import type { RelayLimits } from "../../gen/ferry/config/v1/relay_config_pb.js";
import { msFromDuration } from "../../core/duration.js";
import { FerryError } from "../../core/errors.js";

/**
 * Everything a peer can make a relay node hold, bounded. proto/ferry/config/v1
 * (RelayLimits) is where each limit is named and explained; this is the same
 * set in the units the code uses, with the defaults. docs/security.md lists
 * them with what each protects.
 */
export interface Limits {
  /** TLS handshake, HTTP/2 preface, or one HTTP/1.1 request head must arrive within this. */
  headersTimeoutMs: number;
  /** Keep-alive HTTP/1.1 connections and HTTP/2 connections without a stream close after this. */
  idleTimeoutMs: number;
  maxConnections: number;
  /** Trusted proxies (--trust-proxy) are exempt. */
  maxConnectionsPerIp: number;
  /** Concurrent streams of one HTTP/2 client connection. */
  maxStreamsPerConnection: number;
  clientStreamWindow: number;
  clientConnectionWindow: number;
  /** Exchanges in progress per tenant on this node, unless the tenant sets its own limit. */
  tenantMaxExchanges: number;
  /** Share of a tenant's exchange limit one client address may hold, 1..100. */
  clientSharePercent: number;
  /** Response body bytes queued in this node for one tenant's exchanges. */
  tenantBufferBytes: number;
  maxTunnelsPerKey: number;
  maxTunnelsPerTenant: number;
  maxTargetsPerTunnel: number;
  auditMaxBytes: number;
  auditQueriesPerMinute: number;
  authFailuresBeforeBackoff: number;
  authBackoffMaxMs: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  headersTimeoutMs: 20_000,
  idleTimeoutMs: 65_000,
  maxConnections: 20_000,
  maxConnectionsPerIp: 512,
  maxStreamsPerConnection: 100,
  clientStreamWindow: 256 * KiB,
  clientConnectionWindow: 2 * MiB,
  tenantMaxExchanges: 1000,
  clientSharePercent: 25,
  tenantBufferBytes: 64 * MiB,
  maxTunnelsPerKey: 16,
  maxTunnelsPerTenant: 128,
  maxTargetsPerTunnel: 256,
  auditMaxBytes: 4 * GiB,
  auditQueriesPerMinute: 60,
  authFailuresBeforeBackoff: 5,
  authBackoffMaxMs: 60_000,
});

/** The HTTP/2 window range: at least the protocol's default, at most what HTTP/2 allows (2^31-1). */
const MIN_WINDOW = 65_535;
const MAX_WINDOW = 2 ** 31 - 1;

/** The proto field each limit comes from, for error messages (the JSON name, as the file and --limit write it). */
const FIELD: Record<keyof Limits, string> = {
  headersTimeoutMs: "headersTimeout",
  idleTimeoutMs: "idleTimeout",
  maxConnections: "maxConnections",
  maxConnectionsPerIp: "maxConnectionsPerIp",
  maxStreamsPerConnection: "maxStreamsPerConnection",
  clientStreamWindow: "clientStreamWindowBytes",
  clientConnectionWindow: "clientConnectionWindowBytes",
  tenantMaxExchanges: "tenantMaxExchanges",
  clientSharePercent: "clientSharePercent",
  tenantBufferBytes: "tenantBufferBytes",
  maxTunnelsPerKey: "maxTunnelsPerKey",
  maxTunnelsPerTenant: "maxTunnelsPerTenant",
  maxTargetsPerTunnel: "maxTargetsPerTunnel",
  auditMaxBytes: "auditMaxBytes",
  auditQueriesPerMinute: "auditQueriesPerMinute",
  authFailuresBeforeBackoff: "authFailuresBeforeBackoff",
  authBackoffMaxMs: "authBackoffMax",
};

/** The names operators set limits by (the file's `limits:` keys and --limit NAME=VALUE). */
export const LIMIT_NAMES: ReadonlySet<string> = new Set(Object.values(FIELD));

/** The limits a RelayLimits message sets, over the defaults; throws invalid_config naming the field. */
export function limitsFrom(proto: RelayLimits | undefined): Limits {
  const pick = (n: number | bigint | undefined, fallback: number) => (n ? Number(n) : fallback);
  const d = DEFAULT_LIMITS;
  const limits: Limits = {
    headersTimeoutMs: msFromDuration(proto?.headersTimeout) || d.headersTimeoutMs,
    idleTimeoutMs: msFromDuration(proto?.idleTimeout) || d.idleTimeoutMs,
    maxConnections: pick(proto?.maxConnections, d.maxConnections),
    maxConnectionsPerIp: pick(proto?.maxConnectionsPerIp, d.maxConnectionsPerIp),
    maxStreamsPerConnection: pick(proto?.maxStreamsPerConnection, d.maxStreamsPerConnection),
    clientStreamWindow: pick(proto?.clientStreamWindowBytes, d.clientStreamWindow),
    clientConnectionWindow: pick(proto?.clientConnectionWindowBytes, d.clientConnectionWindow),
    tenantMaxExchanges: pick(proto?.tenantMaxExchanges, d.tenantMaxExchanges),
    clientSharePercent: pick(proto?.clientSharePercent, d.clientSharePercent),
    tenantBufferBytes: pick(proto?.tenantBufferBytes, d.tenantBufferBytes),
    maxTunnelsPerKey: pick(proto?.maxTunnelsPerKey, d.maxTunnelsPerKey),
    maxTunnelsPerTenant: pick(proto?.maxTunnelsPerTenant, d.maxTunnelsPerTenant),
    maxTargetsPerTunnel: pick(proto?.maxTargetsPerTunnel, d.maxTargetsPerTunnel),
    auditMaxBytes: pick(proto?.auditMaxBytes, d.auditMaxBytes),
    auditQueriesPerMinute: pick(proto?.auditQueriesPerMinute, d.auditQueriesPerMinute),
    authFailuresBeforeBackoff: pick(proto?.authFailuresBeforeBackoff, d.authFailuresBeforeBackoff),
    authBackoffMaxMs: msFromDuration(proto?.authBackoffMax) || d.authBackoffMaxMs,
  };
  checkLimits(limits);
  return limits;
}

/** Defaults with some limits replaced (tests, embedders); checked like a file. */
export function withLimits(overrides: Partial<Limits> | undefined): Limits {
  const limits = { ...DEFAULT_LIMITS, ...overrides };
  checkLimits(limits);
  return limits;
}

function checkLimits(l: Limits): void {
  const bad = (key: keyof Limits, why: string) =>
    new FerryError("invalid_argument", "invalid_config", `limits.${FIELD[key]} ${why}`);
  for (const key of Object.keys(FIELD) as Array<keyof Limits>) {
    if (!Number.isSafeInteger(l[key]) || l[key] < 1) throw bad(key, "must be a whole number above 0");
  }
  if (l.clientSharePercent > 100) throw bad("clientSharePercent", "is a percentage: at most 100");
  if (l.maxConnectionsPerIp > l.maxConnections) throw bad("maxConnectionsPerIp", `must not exceed maxConnections (${l.maxConnections})`);
  for (const key of ["clientStreamWindow", "clientConnectionWindow"] as const) {
    if (l[key] < MIN_WINDOW || l[key] > MAX_WINDOW) throw bad(key, `must be between ${MIN_WINDOW} and ${MAX_WINDOW} bytes`);
  }
  if (l.headersTimeoutMs < 100) throw bad("headersTimeoutMs", "must be at least 100ms");
  if (l.idleTimeoutMs < 100) throw bad("idleTimeoutMs", "must be at least 100ms");
}

/**
 * A client source always gets at least this many exchanges (up to the tenant's limit): one browser loads a page
 * with a dozen requests at once, and a share of a small limit must not refuse it.
 */
export const MIN_CLIENT_SHARE = 16;

/** The most exchanges one client address may hold in a tenant whose limit is `tenantLimit`. */
export function clientShare(limits: Limits, tenantLimit: number): number {
  const share = Math.ceil((tenantLimit * limits.clientSharePercent) / 100);
  return Math.min(tenantLimit, Math.max(share, MIN_CLIENT_SHARE));
}
