import type { AuditLog } from "../audit/audit-log.js";
import type { RefusalLimiter } from "../audit/refusal-limiter.js";
import type { SourceBackoff } from "../auth/source-backoff.js";
import { GrpcStatus } from "../http/grpc-status.js";
import type { Catalog } from "../state/catalog.js";
import { type ConnectorCert, serialDenied } from "./connector-cert.js";
import { GrpcError } from "./grpc-call.js";

/** What deciding who a tunnel belongs to needs: the credentials, and where refusals and failures are counted. */
export interface ConnectorAuthDeps {
  catalog: Catalog;
  audit: AuditLog;
  /** Bounds audit events about refusals, per source address (anyone can present a bad key). */
  refusals: RefusalLimiter;
  /** A wrong credential counts against its source. */
  backoff: SourceBackoff;
}

/** Who a tunnel belongs to once authenticated. */
export interface Principal {
  tenant: string;
  /** The connector key's id; empty for a tunnel authenticated by certificate alone. */
  keyId: string;
  /** What the tunnel limits count by: "key:<keyId>", or "cert:<name>" without a key. */
  principal: string;
  /** The audit actor: connector:KEYID, or connector-cert:NAME without a key. */
  actor: string;
  auth: "key" | "certificate" | "certificate+key";
  /** The certificate's name (SAN or CN) when one authenticated the tunnel. */
  certificate?: string;
  /** Its serial (normalised): the tenant's deny list ends the tunnel when it names it. */
  serial?: string;
  /** The connector id the certificate names; Hello must carry the same. */
  connectorId?: string;
  /** When the certificate stops being valid: the tunnel closes then (see the relay's expiry sweep). */
  certificateExpires?: Date;
}

/**
 * A connector key, a client certificate (mTLS), or both. A certificate that
 * does not verify, or whose serial its tenant denies, counts as absent, so a
 * key still gets in; with no key it is refused. Both together must name the
 * same tenant. A wrong credential counts against the source's back-off.
 */
export function authenticate(deps: ConnectorAuthDeps, secret: string, cert: ConnectorCert, source: string): Principal {
  if (cert.kind === "valid" && serialDenied(deps.catalog.getTenant(cert.tenant)?.deniedCertificateSerials, cert.serial)) {
    cert = { kind: "untrusted", reason: "its serial is on the tenant's deny list", subject: `CN=${cert.name}`, denied: cert.serial };
  }
  if (cert.kind === "untrusted" && secret === "") {
    failed(deps, source, {
      reason: cert.denied ? "certificate denied" : "untrusted certificate",
      certificate: cert.subject,
      ...(cert.denied ? { serial: cert.denied } : { error: cert.reason }),
    });
    throw new GrpcError(GrpcStatus.UNAUTHENTICATED, `client certificate not accepted (${cert.reason}) and no connector key sent`);
  }
  if (cert.kind !== "valid") {
    const key = authenticateKey(deps, secret, source);
    return { tenant: key.tenant, keyId: key.keyId, principal: `key:${key.keyId}`, actor: `connector:${key.keyId}`, auth: "key" };
  }
  const actor = `connector-cert:${cert.name}`;
  const details = { certificate: cert.name, serial: cert.serial };
  const key = secret === "" ? undefined : authenticateKey(deps, secret, source);
  if (key && key.tenant !== cert.tenant) {
    refuse(deps, `connector:${key.keyId}`, key.tenant, source, { reason: "certificate and key name different tenants", ...details });
    throw new GrpcError(GrpcStatus.UNAUTHENTICATED, `the client certificate names tenant "${cert.tenant}" but the connector key is another tenant's`);
  }
  const tenant = deps.catalog.getTenant(cert.tenant);
  if (!tenant) {
    refuse(deps, actor, cert.tenant, source, { reason: "unknown tenant", ...details });
    throw new GrpcError(GrpcStatus.UNAUTHENTICATED, `the client certificate names tenant "${cert.tenant}", which does not exist`);
  }
  if (tenant.disabled) {
    refuse(deps, actor, cert.tenant, source, { reason: "tenant disabled", ...details });
    throw new GrpcError(GrpcStatus.PERMISSION_DENIED, `tenant "${cert.tenant}" is disabled`);
  }
  return {
    tenant: cert.tenant,
    keyId: key?.keyId ?? "",
    principal: key ? `key:${key.keyId}` : `cert:${cert.name}`,
    actor: key ? `connector:${key.keyId}` : actor,
    auth: key ? "certificate+key" : "certificate",
    certificate: cert.name,
    serial: cert.serial,
    certificateExpires: cert.notAfter,
    ...(cert.connectorId !== undefined ? { connectorId: cert.connectorId } : {}),
  };
}

/**
 * Audits a refusal, at most a few per source and window (refusal limiter):
 * a connector in a reconnect loop, or anyone with a bad key, repeats it.
 */
export function refuse(deps: ConnectorAuthDeps, actor: string, tenant: string | undefined, source: string, details: Record<string, unknown>): void {
  const suppressed = deps.refusals.admit(source);
  if (suppressed === undefined) return;
  deps.audit.record({
    action: "connector.refused",
    actor,
    ...(tenant ? { tenant } : {}),
    details: { ...details, remoteAddress: source, ...(suppressed ? { suppressedBefore: suppressed } : {}) },
  });
}

export function refuseAnonymous(deps: ConnectorAuthDeps, source: string, details: Record<string, unknown>): void {
  refuse(deps, "anonymous", undefined, source, details);
}

/** A wrong credential: audited, and counted against the source (its next attempts may have to wait). */
function failed(deps: ConnectorAuthDeps, source: string, details: Record<string, unknown>): void {
  deps.backoff.failed(source);
  refuseAnonymous(deps, source, details);
}

function authenticateKey(deps: ConnectorAuthDeps, secret: string, source: string) {
  const check = deps.catalog.checkConnectorKey(secret);
  if (!check.ok) {
    failed(deps, source, { reason: secret === "" ? "missing" : check.reason });
    const message =
      secret === ""
        ? "connector key missing: send authorization: Bearer <key>"
        : check.reason === "revoked"
          ? "connector key was revoked"
          : check.reason === "expired"
            ? "connector key has expired (it was rotated)"
            : "connector key is not valid";
    throw new GrpcError(GrpcStatus.UNAUTHENTICATED, message);
  }
  if (deps.catalog.getTenant(check.key.tenant)?.disabled) {
    refuse(deps, `connector:${check.key.keyId}`, check.key.tenant, source, { reason: "tenant disabled" });
    throw new GrpcError(GrpcStatus.PERMISSION_DENIED, `tenant "${check.key.tenant}" is disabled`);
  }
  return check.key;
}
