import type { IncomingHttpHeaders } from "node:http";
import type { PeerCertificate } from "node:tls";
import type { FerryError } from "../../core/errors.js";
import type { CompiledLogin } from "./login-session.js";
import type { Value } from "@bufbuild/protobuf/wkt";

/** A credential an access rule can accept ("require" in the policy file). */
export type CredentialKind = "apiKey" | "jwt" | "mtls" | "basic" | "login";

/** What the gateway knows of a request when it asks the tenant's policy, before any exchange exists. */
export interface AccessRequest {
  tenant: string;
  target: string;
  /** The path within the target, starting with "/" (no query). */
  path: string;
  /** The client's address: the socket's, or X-Forwarded-For's from a --trust-proxy address. */
  clientAddress: string;
  headers: IncomingHttpHeaders;
  /** The request's Cookie header (the login session), as the client sent it. */
  cookie?: string | string[];
  /** The name the session cookie has on this request (login-cookies.ts cookieName); default ferry_session. */
  sessionCookie?: string;
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
  /** For "login": who signed in, for X-Ferry-Identity. */
  profile?: LoginProfile;
  /** For "login": the session sealed again with its last use now, for a Set-Cookie on the response (see SESSION_TOUCH_MS). */
  renewedSession?: { cookie: string; maxAgeSeconds: number };
}

/** What the identity provider said of a signed-in person, beyond the subject. */
export interface LoginProfile {
  email?: string;
  name?: string;
  groups?: string[];
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
  | "login_required"
  | "login_expired"
  | "login_refused"
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
  /** The rule signs people in: a browser's navigation goes to the sign-in page instead of getting the 401. */
  signIn?: true;
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
  /**
   * The sign-in for a target (its login endpoints): that of the rule that applies to `path` when it takes
   * "login", or without a path that of the first rule for the target that does. Undefined otherwise, and for a
   * rule that cannot be used (it refuses everyone anyway). Never throws.
   */
  loginFor(tenant: string, target: string, path?: string): LoginTarget | undefined;
}

/** A target's sign-in, from its tenant's policy. */
export interface LoginTarget {
  rule: string;
  login: CompiledLogin;
  /** The claims every login rule for this target asks for: the session keeps what decides them, so each rule can check its own. */
  claimRules: readonly Readonly<Record<string, Value>>[];
  /**
   * The rule's checks that come before a credential (its address lists, the source's back-off, a rate limit by ip
   * or rule), for the sign-in paths: anyone can start a sign-in, and each callback may cost the provider a request.
   */
  screen(clientAddress: string): AccessDenied | undefined;
  /** A sign-in from this address failed on its state or its code: it counts in the source's back-off like a wrong credential. */
  failed(clientAddress: string): void;
  succeeded(clientAddress: string): void;
}
