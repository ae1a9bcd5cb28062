import type { IncomingHttpHeaders } from "node:http";
import type { PeerCertificate } from "node:tls";
import type { FerryError } from "../../core/errors.js";

/** A credential an access rule can accept ("require" in the policy file). */
export type CredentialKind = "apiKey" | "jwt" | "mtls" | "basic";

/** What the gateway knows of a request when it asks the tenant's policy, before any exchange exists. */
export interface AccessRequest {
  tenant: string;
  target: string;
  /** The path within the target, starting with "/" (no query). */
  path: string;
  /** The client's address: the socket's, or X-Forwarded-For's from a --trust-proxy address. */
  clientAddress: string;
  headers: IncomingHttpHeaders;
  /** The client certificate the TLS listener got (not yet verified against any tenant CA); undefined without TLS or without one. */
  clientCertificate?: PeerCertificate;
  /** The request arrived over TLS (a rule that accepts only "mtls" can never match otherwise). */
  tls: boolean;
  /**
   * A CORS preflight (OPTIONS with Origin and Access-Control-Request-Method): browsers never send credentials
   * with one, so it needs none; IP rules and ip/rule rate limits still apply.
   */
  preflight?: boolean;
}

/** The client may go on. */
export interface AccessGranted {
  allowed: true;
  /** The rule that applied; undefined when no rule matched (a public target). */
  rule?: string;
  /**
   * How the client proved who it is; "none" for a rule without credentials or a public target; "replay" for an
   * administrator's replay of a captured request (subject: the admin token's id), which no policy is asked about.
   */
  method: CredentialKind | "none" | "replay";
  /** Who: the client key id, the token's sub, the certificate's subject, the basic user; else the client address. */
  subject: string;
  /** Request headers to remove before the request goes on (the credential the relay consumed). */
  consumedHeaders: readonly string[];
}

/** Why a client was refused: fixed strings (metric label and audit reason), never peer input. */
export type AccessDenialReason =
  | "ip_denied"
  | "ip_not_allowed"
  | "credential_missing"
  | "api_key_invalid"
  | "api_key_revoked"
  | "api_key_expired"
  | "api_key_wrong_target"
  | "jwt_invalid"
  | "jwt_expired"
  | "jwt_claims"
  | "certificate_invalid"
  | "basic_invalid"
  | "rate_limited"
  | "too_many_failures"
  | "policy_unusable";

/** The client is refused: nothing reaches the connector. */
export interface AccessDenied {
  allowed: false;
  rule: string;
  reason: AccessDenialReason;
  /** unauthenticated (401), permission_denied (403) or resource_exhausted (429); its message is safe to show the client. */
  error: FerryError;
  /** For 401: the WWW-Authenticate challenge(s), e.g. `Bearer realm="ferry", error="invalid_token"`. */
  wwwAuthenticate?: string[];
  /** For 429: RateLimit headers (IETF draft) and Retry-After, ready to send. */
  headers?: Record<string, string>;
}

export type AccessDecision = AccessGranted | AccessDenied;

/** A value now, or later: the policy engine answers at once whenever it can (no promise, no turn of the event loop). */
export type MaybeAsync<T> = T | Promise<T>;

/**
 * What the state says of a presented client key ("fcl_..."): the engine checks
 * that `tenant` is the request's and the target is in `targets` (when not empty).
 */
export type ClientKeyCheck =
  | { ok: true; keyId: string; tenant: string; targets: readonly string[] }
  | { ok: false; reason: "malformed" | "unknown" | "revoked" | "expired" };

/** A tenant's policy, compiled once per change (CIDRs parsed, rules ordered) and applied per request. */
export interface AccessControl {
  /** True when the tenant has a policy with rules: the gateway skips `check` (and its promise) otherwise. */
  applies(tenant: string): boolean;
  /**
   * The decision, at once when it needs neither I/O nor scrypt (IP rules, rate limits, client keys, a token
   * verified before): behind a policy this runs on every request. A promise otherwise (a token's first
   * check, Basic). Never throws or rejects: anything unexpected is a denial with reason "policy_unusable".
   */
  check(req: AccessRequest): MaybeAsync<AccessDecision>;
}
