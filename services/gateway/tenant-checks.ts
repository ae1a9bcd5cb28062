import type { IncomingHttpHeaders } from "node:http";
import type { TenantRecord } from "../../gen/ferry/state/v1/state_pb.js";
import { FerryError } from "../../core/errors.js";
import type { RelayPath } from "./relay-path.js";
import { crossTenantRefusal } from "./shared-origin.js";

/**
 * What the tenant's settings say about a request, decided before an exchange
 * opens and in this order: a disabled tenant (403 tenant_disabled), a target
 * it does not allow (403 target_not_allowed), a page of another tenant on the
 * relay's shared origin (403 cross_tenant_request, path routing only), a
 * Content-Length over its body limit (413 body_too_large; a body that does not
 * declare its length is cut when it crosses the limit). Returns the refusal,
 * or undefined for a request the tenant takes.
 */
export function tenantRefusal(
  tenant: TenantRecord,
  where: Pick<RelayPath, "tenant" | "target">,
  headers: IncomingHttpHeaders,
  hostRouted: boolean,
): FerryError | undefined {
  if (tenant.disabled) return new FerryError("permission_denied", "tenant_disabled", `tenant "${tenant.name}" is disabled`);
  if (tenant.allowedTargets.length > 0 && !tenant.allowedTargets.includes(where.target)) {
    return new FerryError("permission_denied", "target_not_allowed", `tenant "${tenant.name}" does not allow target "${where.target}"`);
  }
  // Host-routed apps each have their own origin; path-routed ones share the relay's (shared-origin.ts).
  const crossTenant = hostRouted ? undefined : crossTenantRefusal(headers, where.tenant);
  if (crossTenant) return crossTenant;
  const maxBody = tenant.maxRequestBodyBytes;
  const declared = headers["content-length"];
  if (maxBody > 0n && declared !== undefined && /^\d+$/.test(declared) && BigInt(declared) > maxBody) return bodyTooLarge(maxBody);
  return undefined;
}

/** The refusal of a request body over the tenant's limit, declared or found mid-stream. */
export function bodyTooLarge(maxBody: bigint): FerryError {
  return new FerryError("too_large", "body_too_large", `the request body is larger than ${maxBody} bytes, the tenant's limit`);
}
