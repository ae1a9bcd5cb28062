import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import type { AuditLog } from "../audit/audit-log.js";
import type { Catalog } from "../state/catalog.js";

/** Who is calling the admin API. */
export interface AdminPrincipal {
  tokenId: string;
  role: string;
}

export const principalKey = createContextKey<AdminPrincipal | undefined>(undefined);

/**
 * Authenticates every admin call with "authorization: Bearer <token>" and
 * hands the principal to handlers through the context. Failures are audited.
 */
export function authInterceptor(catalog: Catalog, audit: AuditLog): Interceptor {
  return (next) => async (req) => {
    const header = req.header.get("authorization") ?? "";
    const token = header.toLowerCase().startsWith("bearer ") ? header.slice(7).trim() : "";
    const record = token === "" ? undefined : catalog.checkAdminToken(token);
    if (!record) {
      audit.record({
        action: "admin.refused",
        actor: "anonymous",
        details: { rpc: req.method.name, reason: token === "" ? "missing token" : "invalid token" },
      });
      throw new ConnectError(
        token === "" ? "admin token missing: send authorization: Bearer <token>" : "admin token is not valid",
        Code.Unauthenticated,
      );
    }
    req.contextValues.set(principalKey, { tokenId: record.tokenId, role: record.role });
    return next(req);
  };
}
