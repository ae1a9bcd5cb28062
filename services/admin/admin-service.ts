import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  AdminService,
  type Connector,
  ConnectorSchema,
  type Key,
  KeySchema,
  type Tenant,
  TenantSchema,
} from "../../gen/ferry/admin/v1/admin_service_pb.js";
import type { KeyRecord, TenantRecord } from "../../gen/ferry/state/v1/state_pb.js";
import { FerryError } from "../../clients/sdk/errors.js";
import { checkDnsLabel } from "../../clients/sdk/names.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { Catalog } from "../state/catalog.js";
import type { TunnelRegistry } from "../tunnel/tunnel-registry.js";
import { principalKey } from "./admin-auth.js";

export interface AdminServiceDeps {
  catalog: Catalog;
  registry: TunnelRegistry;
  audit: AuditLog;
}

const DEFAULT_PAGE = 100;
const MAX_PAGE = 1000;

/** The admin API: validation, then catalog changes, each audited with its actor. */
export function createAdminService(deps: AdminServiceDeps): ServiceImpl<typeof AdminService> {
  const { catalog, audit } = deps;
  const actor = (ctx: HandlerContext) => `admin:${ctx.values.get(principalKey)?.tokenId ?? "?"}`;

  return {
    async createTenant(req, ctx) {
      const record = await catalog.createTenant(req.name);
      audit.record({ action: "tenant.create", actor: actor(ctx), tenant: record.name });
      return { tenant: tenantOf(record) };
    },

    async getTenant(req) {
      return { tenant: tenantOf(catalog.requireTenant(req.name)) };
    },

    async listTenants(req) {
      if (req.pageSize > MAX_PAGE) {
        throw new FerryError("invalid_argument", "invalid_page_size", `page_size must be at most ${MAX_PAGE}`);
      }
      const size = req.pageSize || DEFAULT_PAGE;
      const after = req.pageToken === "" ? "" : decodePageToken(req.pageToken);
      const all = catalog.listTenants().filter((t) => t.name > after);
      const page = all.slice(0, size);
      return {
        tenants: page.map(tenantOf),
        nextPageToken: all.length > size ? Buffer.from(page[page.length - 1]!.name).toString("base64url") : "",
      };
    },

    async deleteTenant(req, ctx) {
      await catalog.deleteTenant(req.name);
      audit.record({ action: "tenant.delete", actor: actor(ctx), tenant: req.name });
      return {};
    },

    async createKey(req, ctx) {
      const { record, secret } = await catalog.createKey(req.tenant, req.description);
      audit.record({ action: "key.create", actor: actor(ctx), tenant: req.tenant, details: { keyId: record.keyId } });
      return { key: keyOf(record), secret };
    },

    async listKeys(req) {
      catalog.requireTenant(req.tenant);
      return { keys: catalog.listKeys(req.tenant).map(keyOf) };
    },

    async revokeKey(req, ctx) {
      catalog.requireTenant(req.tenant);
      const record = await catalog.revokeKey(req.tenant, req.keyId);
      audit.record({ action: "key.revoke", actor: actor(ctx), tenant: req.tenant, details: { keyId: req.keyId } });
      return { key: keyOf(record) };
    },

    async listConnectors(req) {
      catalog.requireTenant(checkDnsLabel("tenant", req.tenant));
      return { connectors: connectorsOf(deps.registry, req.tenant) };
    },
  };
}

function tenantOf(record: TenantRecord): Tenant {
  return create(TenantSchema, { name: record.name, createTime: record.createTime });
}

function keyOf(record: KeyRecord): Key {
  return create(KeySchema, {
    tenant: record.tenant,
    keyId: record.keyId,
    description: record.description,
    createTime: record.createTime,
    revokeTime: record.revokeTime,
  });
}

/** Groups a tenant's tunnels by connector. */
function connectorsOf(registry: TunnelRegistry, tenant: string): Connector[] {
  const byId = new Map<string, Connector>();
  const since = new Map<string, Date>();
  for (const t of registry.tunnels(tenant)) {
    const i = t.info;
    let c = byId.get(i.connectorId);
    if (!c) {
      c = create(ConnectorSchema, {
        tenant,
        connectorId: i.connectorId,
        version: i.connectorVersion,
        hostname: i.hostname,
        keyId: i.keyId,
      });
      byId.set(i.connectorId, c);
    }
    c.tunnels++;
    c.inFlight += t.inFlight;
    if (!c.remoteAddresses.includes(i.remoteAddress)) c.remoteAddresses.push(i.remoteAddress);
    for (const target of i.targets) if (!c.targets.includes(target)) c.targets.push(target);
    const first = since.get(i.connectorId);
    if (!first || i.connectTime < first) since.set(i.connectorId, i.connectTime);
  }
  for (const [id, c] of byId) {
    c.targets.sort();
    c.connectTime = timestampFromDate(since.get(id)!);
  }
  return [...byId.values()].sort((a, b) => (a.connectorId < b.connectorId ? -1 : 1));
}

function decodePageToken(token: string): string {
  const name = Buffer.from(token, "base64url").toString("utf8");
  if (!/^[a-z0-9-]{1,63}$/.test(name)) {
    throw new FerryError("invalid_argument", "invalid_page_token", "page_token is not one this server issued");
  }
  return name;
}
