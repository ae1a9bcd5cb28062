import { Code, ConnectError, createContextKey, createContextValues, type ContextValues, type Interceptor } from "@connectrpc/connect";
import type { BlockList } from "node:net";
import { clientAddressOf } from "../auth/client-address.js";
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import type { AuditLog } from "../audit/audit-log.js";
import { createRefusalLimiter, type RefusalLimiter } from "../audit/refusal-limiter.js";
import { bearer } from "../auth/bearer.js";
import type { SourceBackoff } from "../auth/source-backoff.js";
import type { PeerFaults } from "../limits/peer-faults.js";
import type { Catalog } from "../state/catalog.js";

/** Who is calling the admin API. */
export interface AdminPrincipal {
  tokenId: string;
  /** "admin", "viewer" or "tenant:<name>". */
  role: string;
}

export const principalKey = createContextKey<AdminPrincipal | undefined>(undefined);

/** The caller's socket address ("" when unknown): what back-off and refusal records are keyed by. */
export const peerAddressKey = createContextKey<string>("");

/**
 * For connectNodeAdapter's `contextValues`: hands the interceptors the
 * caller's address (the Connect request itself does not carry it): the
 * socket's, or behind a --trust-proxy the client it forwards for, so one
 * caller's failures do not make every admin behind the balancer wait.
 */
export function adminContextValues(trusted: BlockList | undefined): (req: IncomingMessage | Http2ServerRequest) => ContextValues {
  return (req) => {
    const forwarded = req.headers["x-forwarded-for"];
    const { clientAddress } = clientAddressOf(req.socket?.remoteAddress ?? "", Array.isArray(forwarded) ? forwarded.join(",") : forwarded, trusted);
    return createContextValues().set(peerAddressKey, clientAddress);
  };
}

export interface AdminAuthOptions {
  /** Back-off on failed tokens per source (one per node, apart from connector keys'). Without it, none. */
  backoff?: SourceBackoff;
  /** Counts refusals by the back-off. */
  faults?: PeerFaults;
  /** Bounds audit records of refused calls per source; one of its own when not given. */
  refusals?: RefusalLimiter;
}

/**
 * What each RPC needs. `write` calls change something; `tenant` calls are about
 * one tenant's objects, named by the request field `tenantField`; `any-tenant`
 * calls may name a tenant (`tenantField`) or none (the service then narrows
 * them to the caller's); `global` calls are about the relay as a whole.
 */
interface Rule {
  write: boolean;
  /** Admin tokens only, whatever the scope (a replay acts on a target as an administrator). */
  adminOnly?: true;
  scope: "tenant" | "global" | "any-tenant";
  tenantField?: (message: Record<string, unknown>) => string | undefined;
}

const byTenant = (m: Record<string, unknown>) => m.tenant as string | undefined;
const byName = (m: Record<string, unknown>) => m.name as string | undefined;

const RULES: Record<string, Rule> = {
  CreateTenant: { write: true, scope: "global" },
  GetTenant: { write: false, scope: "tenant", tenantField: byName },
  // Tenant tokens may list: they see only their own tenant.
  ListTenants: { write: false, scope: "any-tenant" },
  UpdateTenant: { write: true, scope: "global" },
  DeleteTenant: { write: true, scope: "global" },
  CreateKey: { write: true, scope: "tenant", tenantField: byTenant },
  ListKeys: { write: false, scope: "tenant", tenantField: byTenant },
  RevokeKey: { write: true, scope: "tenant", tenantField: byTenant },
  RotateKey: { write: true, scope: "tenant", tenantField: byTenant },
  ListConnectors: { write: false, scope: "tenant", tenantField: byTenant },
  DisconnectConnector: { write: true, scope: "tenant", tenantField: byTenant },
  ListTargets: { write: false, scope: "tenant", tenantField: byTenant },
  GetStats: { write: false, scope: "tenant", tenantField: byTenant },
  // Tenant tokens may query: their filter is forced to their own tenant.
  ListAuditEvents: { write: false, scope: "any-tenant", tenantField: byTenant },
  CreateToken: { write: true, scope: "global" },
  ListTokens: { write: false, scope: "global" },
  RevokeToken: { write: true, scope: "global" },
  ListNodes: { write: false, scope: "global" },
  // A tenant token manages its own tenant's client access, as it does its connector keys.
  GetAccessPolicy: { write: false, scope: "tenant", tenantField: byTenant },
  SetAccessPolicy: { write: true, scope: "tenant", tenantField: byTenant },
  EndLoginSessions: { write: true, scope: "tenant", tenantField: byTenant },
  CreateClientKey: { write: true, scope: "tenant", tenantField: byTenant },
  ListClientKeys: { write: false, scope: "tenant", tenantField: byTenant },
  RevokeClientKey: { write: true, scope: "tenant", tenantField: byTenant },
  // Streams carry no request message here: the handlers narrow a tenant token to its tenant (traffic-rpcs.ts).
  WatchExchanges: { write: false, scope: "any-tenant", tenantField: byTenant },
  GetTrafficHistory: { write: false, scope: "any-tenant", tenantField: byTenant },
  // Starting and stopping captures is audited and changes what the node keeps: not for viewers.
  StartCapture: { write: true, scope: "tenant", tenantField: byTenant },
  StopCapture: { write: true, scope: "any-tenant" },
  ListCaptures: { write: false, scope: "any-tenant", tenantField: byTenant },
  GetCapture: { write: false, scope: "any-tenant" },
  ReplayExchange: { write: true, scope: "global", adminOnly: true },
  GetCaller: { write: false, scope: "any-tenant" },
};

/** The tenant a tenant-role token is bound to, or undefined for admin and viewer. */
export function boundTenant(p: AdminPrincipal | undefined): string | undefined {
  return p?.role.startsWith("tenant:") ? p.role.slice("tenant:".length) : undefined;
}

/** Why `p` may not make this call, or undefined when it may. */
export function denial(p: AdminPrincipal, rpc: string, message: Record<string, unknown>): string | undefined {
  const rule = RULES[rpc];
  if (!rule) return `no access rule for ${rpc}`;
  if (p.role === "admin") return undefined;
  if (rule.adminOnly) return `${rpc} is for admin tokens only`;
  if (p.role === "viewer") return rule.write ? "viewer tokens are read only" : undefined;
  const tenant = boundTenant(p);
  if (tenant === undefined) return `unknown role "${p.role}"`;
  if (rule.scope === "global") return `a token for tenant "${tenant}" cannot call ${rpc}`;
  const named = rule.tenantField?.(message);
  const elsewhere = rule.scope === "tenant" ? named !== tenant : Boolean(named) && named !== tenant;
  if (elsewhere) return `a token for tenant "${tenant}" reaches only that tenant`;
  return undefined;
}

/**
 * Authenticates every admin call with "authorization: Bearer <token>",
 * authorises it by the token's role, and audits it: changes in detail where
 * the service records them, reads and refusals here. A source address that
 * keeps presenting wrong tokens is made to wait (options.backoff): meanwhile
 * its calls are refused with ResourceExhausted before the token is looked at.
 */
export function authInterceptor(catalog: Catalog, audit: AuditLog, options: AdminAuthOptions = {}): Interceptor {
  const refusals = options.refusals ?? createRefusalLimiter();
  const refused = (source: string, details: Record<string, unknown>) => {
    const suppressed = refusals.admit(source);
    if (suppressed === undefined) return;
    audit.record({
      action: "admin.refused",
      actor: "anonymous",
      details: { ...details, ...(source ? { remoteAddress: source } : {}), ...(suppressed ? { suppressedBefore: suppressed } : {}) },
    });
  };
  return (next) => async (req) => {
    const rpc = req.method.name;
    const source = req.contextValues.get(peerAddressKey);
    const wait = options.backoff?.waitMs(source) ?? 0;
    if (wait > 0) {
      options.faults?.limited("authFailuresBeforeBackoff");
      refused(source, { rpc, reason: "too many failed attempts" });
      const seconds = Math.ceil(wait / 1000);
      throw new ConnectError(`too many failed attempts from this address: retry in ${seconds}s`, Code.ResourceExhausted, {
        "retry-after": String(seconds),
      });
    }
    const token = bearer(req.header.get("authorization") ?? undefined);
    const record = token === "" ? undefined : catalog.checkAdminToken(token);
    if (!record) {
      options.backoff?.failed(source);
      refused(source, { rpc, reason: token === "" ? "missing token" : "invalid token" });
      throw new ConnectError(
        token === "" ? "admin token missing: send authorization: Bearer <token>" : "admin token is not valid",
        Code.Unauthenticated,
      );
    }
    options.backoff?.succeeded(source);
    const principal = { tokenId: record.tokenId, role: record.role };
    const message = (req as unknown as { message?: Record<string, unknown> }).message ?? {};
    const why = denial(principal, rpc, message);
    if (why) {
      audit.record({ action: "admin.denied", actor: `admin:${record.tokenId}`, tenant: boundTenant(principal), details: { rpc, reason: why } });
      throw new ConnectError(why, Code.PermissionDenied);
    }
    req.contextValues.set(principalKey, principal);
    if (!RULES[rpc]!.write) {
      // Reads are audited too, buffered: a dashboard polling GetStats must not cost a disk write per call.
      // A tenant token's reads belong to its own tenant's trail, whatever tenant the request names.
      audit.recordRequest({ action: "admin.read", actor: `admin:${record.tokenId}`, tenant: boundTenant(principal) ?? tenantOf(message), details: { rpc } });
    }
    return next(req);
  };
}

function tenantOf(message: Record<string, unknown>): string | undefined {
  const t = message.tenant ?? message.name;
  return typeof t === "string" && t !== "" ? t : undefined;
}
