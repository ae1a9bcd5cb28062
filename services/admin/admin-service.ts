import type { SecretBox } from "../auth/secret-box.js";
import { create, type JsonObject, toJson } from "@bufbuild/protobuf";
import type { Limits } from "../limits/limits.js";
import { timestampFromDate, timestampMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  AdminService,
  type AuditEvent,
  type Connector,
  ConnectorSchema,
  type Key,
  KeySchema,
  StatsEntrySchema,
  TargetSchema,
  type Tenant,
  TenantSchema,
  type Token,
  TokenSchema,
  type TrafficStats,
  TrafficStatsSchema,
} from "../../gen/ferry/admin/v1/admin_service_pb.js";
import type { AdminTokenRecord, KeyRecord, TenantRecord } from "../../gen/ferry/state/v1/state_pb.js";
import { durationFromMs, msFromDuration } from "../../core/duration.js";
import { FerryError } from "../../core/errors.js";
import { checkDnsLabel } from "../../core/names.js";
import type { AuditLog, AuditQuery, TenantScope } from "../audit/audit-log.js";
import type { PeerFaults } from "../limits/peer-faults.js";
import type { Catalog } from "../state/catalog.js";
import { settingsOf, type TenantSettings } from "../state/tenant-settings.js";
import { OTHER_TARGET, type TrafficFigures, type TrafficStats as Stats } from "../observability/traffic-stats.js";
import { accessRpcs } from "./access-rpcs.js";
import { type TrafficRpcDeps, trafficRpcs } from "./traffic-rpcs.js";
import { type AdminPrincipal, boundTenant, principalKey } from "./admin-auth.js";
import { createAuditQueryGate } from "./audit-query-gate.js";
import type { Directory, TunnelView } from "./directory.js";

export interface AdminServiceDeps {
  catalog: Catalog;
  /** Live nodes and tunnels (this node's, or the cluster's). */
  directory: Directory;
  audit: AuditLog;
  /** ListAuditEvents: this node's files, or the cluster's audit stream. */
  queryAudit(q: AuditQuery): Promise<{ events: AuditEvent[]; nextPageToken: string }>;
  stats: Stats;
  limits: Limits;
  /** Counts refusals by limits (audit queries). */
  faults?: PeerFaults;
  /** Whether this node's TLS listener asks clients for certificates: an access rule accepting only mtls cannot match otherwise. */
  clientCertificates: boolean;
  /** The operator's secret keys (login client secrets are sealed with them). */
  secrets?: SecretBox;
  /** Live traffic, history, captures and replays (traffic-rpcs.ts). */
  traffic: Omit<TrafficRpcDeps, "catalog" | "audit">;
}

const DEFAULT_PAGE = 100;
const MAX_PAGE = 1000;
const DEFAULT_GRACE_MS = 24 * 3_600_000;

/** The admin API: validation, then catalog changes, each audited with its actor and before/after. */
export function createAdminService(deps: AdminServiceDeps): ServiceImpl<typeof AdminService> {
  const { catalog, audit, directory } = deps;
  const principal = (ctx: HandlerContext): AdminPrincipal => ctx.values.get(principalKey)!;
  const actor = (ctx: HandlerContext) => `admin:${principal(ctx).tokenId}`;
  const auditGate = createAuditQueryGate({ perMinute: deps.limits.auditQueriesPerMinute, faults: deps.faults });

  return {
    async createTenant(req, ctx) {
      const record = await catalog.createTenant(req.name, req.settings ? settingsFrom(req.settings) : {});
      audit.record({ action: "tenant.create", actor: actor(ctx), tenant: record.name, tenantId: record.tenantId, after: json(TenantSchema, tenantOf(record)) });
      return { tenant: tenantOf(record) };
    },

    async getTenant(req) {
      return { tenant: tenantOf(catalog.requireTenant(req.name)) };
    },

    async listTenants(req, ctx) {
      if (req.pageSize > MAX_PAGE) throw new FerryError("invalid_argument", "invalid_page_size", `page_size must be at most ${MAX_PAGE}`);
      const size = req.pageSize || DEFAULT_PAGE;
      const after = req.pageToken === "" ? "" : decodeNameToken(req.pageToken);
      const only = boundTenant(principal(ctx));
      const all = catalog.listTenants().filter((t) => t.name > after && (only === undefined || t.name === only));
      const page = all.slice(0, size);
      return {
        tenants: page.map(tenantOf),
        nextPageToken: all.length > size ? Buffer.from(page[page.length - 1]!.name).toString("base64url") : "",
      };
    },

    async updateTenant(req, ctx) {
      if (!req.tenant) throw new FerryError("invalid_argument", "missing_tenant", "tenant is required (with its name and the new values)");
      const { before, after } = await catalog.updateTenant(req.tenant.name, settingsFrom(req.tenant), req.updateMask?.paths ?? []);
      audit.record({
        action: "tenant.update",
        actor: actor(ctx),
        tenant: after.name,
        details: { fields: req.updateMask?.paths ?? [] },
        before: json(TenantSchema, tenantOf(before)),
        after: json(TenantSchema, tenantOf(after)),
      });
      return { tenant: tenantOf(after) };
    },

    async deleteTenant(req, ctx) {
      const before = catalog.requireTenant(req.name);
      await catalog.deleteTenant(req.name);
      // Its id from the record: the name no longer finds it.
      audit.record({ action: "tenant.delete", actor: actor(ctx), tenant: req.name, tenantId: before.tenantId, before: json(TenantSchema, tenantOf(before)) });
      return {};
    },

    async createKey(req, ctx) {
      const { record, secret } = await catalog.createKey(req.tenant, req.description);
      audit.record({ action: "key.create", actor: actor(ctx), tenant: req.tenant, after: json(KeySchema, keyOf(record)) });
      return { key: keyOf(record), secret };
    },

    async listKeys(req) {
      catalog.requireTenant(req.tenant);
      return { keys: catalog.listKeys(req.tenant).map(keyOf) };
    },

    async revokeKey(req, ctx) {
      catalog.requireTenant(req.tenant);
      const before = catalog.requireKey(req.tenant, req.keyId);
      const record = await catalog.revokeKey(req.tenant, req.keyId);
      audit.record({
        action: "key.revoke",
        actor: actor(ctx),
        tenant: req.tenant,
        details: { keyId: req.keyId },
        before: json(KeySchema, keyOf(before)),
        after: json(KeySchema, keyOf(record)),
      });
      return { key: keyOf(record) };
    },

    async rotateKey(req, ctx) {
      catalog.requireTenant(req.tenant);
      const before = catalog.requireKey(req.tenant, req.keyId);
      const graceMs = req.grace ? (msFromDuration(req.grace) ?? 0) : DEFAULT_GRACE_MS;
      const { record, secret, old } = await catalog.rotateKey(req.tenant, req.keyId, graceMs, req.description || undefined);
      audit.record({
        action: "key.rotate",
        actor: actor(ctx),
        tenant: req.tenant,
        details: { keyId: req.keyId, newKeyId: record.keyId, graceMs },
        before: json(KeySchema, keyOf(before)),
        after: json(KeySchema, keyOf(old)),
      });
      return { key: keyOf(record), secret, oldKey: keyOf(old) };
    },

    async listConnectors(req) {
      catalog.requireTenant(checkDnsLabel("tenant", req.tenant));
      return { connectors: connectorsOf(directory.tunnels(req.tenant), req.tenant) };
    },

    async disconnectConnector(req, ctx) {
      catalog.requireTenant(req.tenant);
      if (req.reason.length > 200) throw new FerryError("invalid_argument", "invalid_reason", "reason is longer than 200 characters");
      const reason = `disconnected by an administrator${req.reason ? `: ${req.reason}` : ""}`;
      const tunnels = await directory.disconnect(req.tenant, req.connectorId, reason);
      if (tunnels === 0) {
        throw new FerryError("not_found", "connector_not_found", `tenant "${req.tenant}" has no connector "${req.connectorId}" online`);
      }
      audit.record({
        action: "connector.kick",
        actor: actor(ctx),
        tenant: req.tenant,
        details: { connectorId: req.connectorId, reason: req.reason, tunnels },
      });
      return { tunnels };
    },

    async listTargets(req) {
      const tenant = catalog.requireTenant(req.tenant);
      const byName = new Map<string, { connectors: Set<string>; tunnels: number }>();
      for (const t of directory.tunnels(req.tenant)) {
        for (const name of t.targets) {
          let e = byName.get(name);
          if (!e) byName.set(name, (e = { connectors: new Set(), tunnels: 0 }));
          e.connectors.add(t.connectorId);
          e.tunnels++;
        }
      }
      const allowed = (name: string) => tenant.allowedTargets.length === 0 || tenant.allowedTargets.includes(name);
      return {
        targets: [...byName]
          .sort(([a], [b]) => (a < b ? -1 : 1))
          .map(([name, e]) => create(TargetSchema, { name, connectors: e.connectors.size, tunnels: e.tunnels, allowed: allowed(name) })),
      };
    },

    async getStats(req) {
      catalog.requireTenant(req.tenant);
      if (req.target !== "" && req.target !== OTHER_TARGET) checkDnsLabel("target", req.target);
      return {
        entries: deps.stats.snapshot(req.tenant, req.target || undefined).map((s) =>
          create(StatsEntrySchema, {
            tenant: s.tenant,
            target: s.target,
            recent: trafficOf(s.recent),
            total: trafficOf(s.total),
            recentWindow: durationFromMs(s.recentWindowMs),
          }),
        ),
      };
    },

    async listAuditEvents(req, ctx) {
      if (req.pageSize > MAX_PAGE) throw new FerryError("invalid_argument", "invalid_page_size", `page_size must be at most ${MAX_PAGE}`);
      // A tenant token naming another tenant was refused by the interceptor; naming none means its own.
      const only = boundTenant(principal(ctx));
      const start = req.startTime ? new Date(timestampMs(req.startTime)) : undefined;
      const end = req.endTime ? new Date(timestampMs(req.endTime)) : undefined;
      if (start && end && start >= end) throw new FerryError("invalid_argument", "invalid_time_range", "start_time must be before end_time");
      const tenant = only ?? (req.tenant || undefined);
      // The tenant of that name now, never an earlier one of the same name. A name no tenant has now
      // shows an admin the trail of the deleted ones (a tenant token's tenant always exists).
      let tenantScope: TenantScope | undefined;
      if (tenant !== undefined) {
        const current = catalog.getTenant(tenant);
        if (current) tenantScope = { id: current.tenantId, createMs: current.createTime ? timestampMs(current.createTime) : 0 };
        else if (only !== undefined) return { events: [], nextPageToken: "" };
      }
      return auditGate.run(principal(ctx).tokenId, () =>
        deps.queryAudit({
          tenant,
          tenantScope,
          actor: req.actor || undefined,
          action: req.action || undefined,
          startTime: start,
          endTime: end,
          pageSize: req.pageSize || DEFAULT_PAGE,
          pageToken: req.pageToken || undefined,
        }),
        ctx.signal,
      );
    },

    async createToken(req, ctx) {
      const { record, secret } = await catalog.createToken(req.role, req.description);
      audit.record({ action: "token.create", actor: actor(ctx), details: { tokenId: record.tokenId, role: record.role }, after: json(TokenSchema, tokenOf(record)) });
      return { token: tokenOf(record), secret };
    },

    async listTokens() {
      return { tokens: catalog.listTokens().map(tokenOf) };
    },

    async revokeToken(req, ctx) {
      const record = await catalog.revokeToken(req.tokenId);
      audit.record({ action: "token.revoke", actor: actor(ctx), details: { tokenId: req.tokenId }, after: json(TokenSchema, tokenOf(record)) });
      return { token: tokenOf(record) };
    },

    async listNodes() {
      return { nodes: directory.nodes() };
    },

    ...accessRpcs(deps, actor),
    ...trafficRpcs({ ...deps.traffic, catalog, audit }, actor),
  };
}

/** Settings from an API Tenant (every field; the update mask picks which ones apply). */
function settingsFrom(t: Tenant): TenantSettings {
  return {
    displayName: t.displayName,
    description: t.description,
    disabled: t.disabled,
    requestTimeout: t.requestTimeout,
    maxRequestBodyBytes: t.maxRequestBodyBytes,
    maxConcurrentExchanges: t.maxConcurrentExchanges,
    allowedTargets: [...t.allowedTargets],
    deniedCertificateSerials: [...t.deniedCertificateSerials],
  };
}

function tenantOf(record: TenantRecord): Tenant {
  return create(TenantSchema, {
    ...settingsOf(record),
    name: record.name,
    id: record.tenantId,
    createTime: record.createTime,
    updateTime: record.updateTime,
  });
}

function keyOf(record: KeyRecord): Key {
  return create(KeySchema, {
    tenant: record.tenant,
    keyId: record.keyId,
    description: record.description,
    createTime: record.createTime,
    revokeTime: record.revokeTime,
    expireTime: record.expireTime,
    replacedBy: record.replacedBy,
  });
}

function tokenOf(record: AdminTokenRecord): Token {
  return create(TokenSchema, {
    tokenId: record.tokenId,
    role: record.role,
    description: record.description,
    createTime: record.createTime,
    revokeTime: record.revokeTime,
  });
}

function trafficOf(f: TrafficFigures): TrafficStats {
  return create(TrafficStatsSchema, {
    requests: BigInt(f.requests),
    clientErrors: BigInt(f.clientErrors),
    serverErrors: BigInt(f.serverErrors),
    relayErrors: Object.fromEntries(Object.entries(f.relayErrors).map(([k, v]) => [k, BigInt(v)])),
    bytesIn: BigInt(f.bytesIn),
    bytesOut: BigInt(f.bytesOut),
    latencyP50: durationFromMs(f.latencyP50Ms),
    latencyP95: durationFromMs(f.latencyP95Ms),
    latencyP99: durationFromMs(f.latencyP99Ms),
  });
}

/** Groups a tenant's tunnels by connector. */
function connectorsOf(tunnels: readonly TunnelView[], tenant: string): Connector[] {
  const byId = new Map<string, { c: Connector; since: Date; rtt: number | undefined }>();
  for (const t of tunnels) {
    let e = byId.get(t.connectorId);
    if (!e) {
      e = {
        c: create(ConnectorSchema, { tenant, connectorId: t.connectorId, version: t.connectorVersion, hostname: t.hostname, keyId: t.keyId }),
        since: t.connectTime,
        rtt: undefined,
      };
      byId.set(t.connectorId, e);
    }
    const c = e.c;
    c.tunnels++;
    c.inFlight += t.inFlight;
    if (!c.remoteAddresses.includes(t.remoteAddress)) c.remoteAddresses.push(t.remoteAddress);
    if (!c.nodeIds.includes(t.nodeId)) c.nodeIds.push(t.nodeId);
    for (const target of t.targets) if (!c.targets.includes(target)) c.targets.push(target);
    if (t.connectTime < e.since) e.since = t.connectTime;
    // Paused once every tunnel has heard of it: only then does the relay route nothing to it.
    c.paused = (c.tunnels === 1 || c.paused) && t.paused;
    if (t.leaveTime) c.leaveTime = timestampFromDate(t.leaveTime);
    if (t.rttMs !== undefined && (e.rtt === undefined || t.rttMs > e.rtt)) e.rtt = t.rttMs;
  }
  return [...byId.values()]
    .map(({ c, since, rtt }) => {
      c.targets.sort();
      c.nodeIds.sort();
      c.connectTime = timestampFromDate(since);
      if (rtt !== undefined) c.lastPingRtt = durationFromMs(rtt);
      return c;
    })
    .sort((a, b) => (a.connectorId < b.connectorId ? -1 : 1));
}

function json<S extends Parameters<typeof toJson>[0]>(schema: S, message: Parameters<typeof toJson<S>>[1]): Record<string, unknown> {
  return toJson(schema, message) as JsonObject;
}

function decodeNameToken(token: string): string {
  const name = Buffer.from(token, "base64url").toString("utf8");
  if (!/^[a-z0-9-]{1,63}$/.test(name)) {
    throw new FerryError("invalid_argument", "invalid_page_token", "page_token is not one this server issued");
  }
  return name;
}
