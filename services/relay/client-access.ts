import type { Logger } from "../../core/logger.js";
import type { AccessControl } from "../access/access-control.js";
import { createAccessControl } from "../access/create-access-control.js";
import { createJwtVerifier } from "../access/jwt-verifier.js";
import { createSourceBackoff } from "../auth/source-backoff.js";
import type { Limits } from "../limits/limits.js";
import type { Catalog } from "../state/catalog.js";
import type { SecretBox } from "../auth/secret-box.js";
import { createOidcClient, type OidcClient } from "../login/oidc-client.js";

/** The tenants' client access policies as this node applies them, with what they hold (JWKS caches, fetches). */
export interface ClientAccess {
  control: AccessControl;
  /** The relay as an OpenID relying party for "login" rules, on the same key caches as bearer tokens. */
  oidc: OidcClient;
  close(): void;
}

/**
 * The policy engine over the stored policies and client keys. Failed client
 * credentials back off per source on their own: a guessing client must not
 * lock out the connectors or admins behind the same address, nor they it.
 *
 * In a cluster, `liveNodes` (ClusterMembership.liveNodes) splits every rate
 * limit: each node enforces 1/N of it, so with the load spread over the nodes
 * (as a load balancer spreads it) the tenant's limit holds as a whole, not N
 * times over. The price: load that is not spread (every client of a rule on
 * one node, e.g. sticky sessions) gets only limit/N. Exact limits whatever
 * the spread would need shared counters over NATS (a node taking tokens in
 * batches from a cluster-wide bucket); the shares need no extra traffic.
 * While nodes come and go the shares follow within a few seconds (heartbeats),
 * and a node cut off from NATS soon counts itself alone and enforces the
 * whole limit: neither side can know what the other allows.
 */
export function createClientAccess(catalog: Catalog, limits: Limits, log: Logger, liveNodes?: () => number, secrets?: SecretBox): ClientAccess {
  const jwt = createJwtVerifier({ log });
  const oidc = createOidcClient(jwt);
  const control = createAccessControl({
    policyOf: (tenant) => catalog.accessPolicies.getAccessPolicy(tenant),
    unusable: (tenant) => catalog.accessPolicies.policyUnusable(tenant),
    checkClientKey: (secret) => catalog.clientKeys.checkClientKey(secret),
    verifyJwt: (token, rule) => jwt.verify(token, rule),
    backoff: createSourceBackoff(limits),
    ...(liveNodes ? { share: () => 1 / liveNodes() } : {}),
    ...(secrets ? { secrets } : {}),
  });
  return {
    control,
    oidc,
    close: () => {
      oidc.close();
      jwt.close();
    },
  };
}
