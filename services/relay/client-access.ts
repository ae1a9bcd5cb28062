import type { Logger } from "../../core/logger.js";
import type { AccessControl } from "../access/access-control.js";
import { createAccessControl } from "../access/create-access-control.js";
import { createJwtVerifier } from "../access/jwt-verifier.js";
import { createSourceBackoff } from "../auth/source-backoff.js";
import type { Limits } from "../limits/limits.js";
import type { Catalog } from "../state/catalog.js";

/** The tenants' client access policies as this node applies them, with what they hold (JWKS caches, fetches). */
export interface ClientAccess {
  control: AccessControl;
  close(): void;
}

/**
 * The policy engine over the stored policies and client keys. Failed client
 * credentials back off per source on their own: a guessing client must not
 * lock out the connectors or admins behind the same address, nor they it.
 */
export function createClientAccess(catalog: Catalog, limits: Limits, log: Logger): ClientAccess {
  const jwt = createJwtVerifier({ log });
  const control = createAccessControl({
    policyOf: (tenant) => catalog.accessPolicies.getAccessPolicy(tenant),
    unusable: (tenant) => catalog.accessPolicies.policyUnusable(tenant),
    checkClientKey: (secret) => catalog.clientKeys.checkClientKey(secret),
    verifyJwt: (token, rule) => jwt.verify(token, rule),
    backoff: createSourceBackoff(limits),
  });
  return { control, close: () => jwt.close() };
}
