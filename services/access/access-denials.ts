import { type ErrorKind, FerryError } from "../../core/errors.js";
import type { AccessDenialReason, AccessDenied, CredentialKind } from "./access-control.js";

/**
 * The refusals of the access policy, in one place: status (by the error's
 * kind), message and challenge for each reason. Messages are for the
 * client: they say what to send, never what the relay holds (an unknown key
 * and another tenant's key read the same).
 */

export const BEARER_CHALLENGE = 'Bearer realm="ferry"';
/** RFC 6750 §3.1: a bearer credential was presented and is not good. */
export const INVALID_TOKEN_CHALLENGE = 'Bearer realm="ferry", error="invalid_token"';
export const BASIC_CHALLENGE = 'Basic realm="ferry"';

export function deny(
  rule: string,
  reason: AccessDenialReason,
  kind: ErrorKind,
  message: string,
  more: { wwwAuthenticate?: string[]; retryAfterSeconds?: number; headers?: Record<string, string>; signIn?: true } = {},
): AccessDenied {
  const extra = more.retryAfterSeconds !== undefined ? { retryAfterSeconds: more.retryAfterSeconds } : {};
  return {
    allowed: false,
    rule,
    reason,
    error: new FerryError(kind, reason, message, extra),
    ...(more.wwwAuthenticate ? { wwwAuthenticate: more.wwwAuthenticate } : {}),
    ...(more.headers ? { headers: more.headers } : {}),
    ...(more.signIn ? { signIn: true } : {}),
  };
}

/** 401 for a request that carries none of the credentials its rule accepts: one challenge per scheme that would do. */
export function credentialMissing(rule: string, target: string, require: readonly CredentialKind[], apiKeyHeader: string | undefined): AccessDenied {
  const challenges = new Set<string>();
  const wants: string[] = [];
  for (const kind of require) {
    if (kind === "apiKey") {
      if (!apiKeyHeader) challenges.add(BEARER_CHALLENGE);
      wants.push(apiKeyHeader ? `a client key (${apiKeyHeader}: <key>)` : "a client key (Authorization: Bearer <key>)");
    } else if (kind === "jwt") {
      challenges.add(BEARER_CHALLENGE);
      wants.push("a token from the tenant's identity provider (Authorization: Bearer <token>)");
    } else if (kind === "basic") {
      challenges.add(BASIC_CHALLENGE);
      wants.push("a user name and password (HTTP Basic)");
    } else if (kind === "login") {
      wants.push("signing in (open it in a browser)");
    } else {
      wants.push("a client certificate");
    }
  }
  const list = wants.length > 1 ? `${wants.slice(0, -1).join(", ")} or ${wants.at(-1)}` : (wants[0] ?? "a credential");
  // An X-Api-Key-only rule has no HTTP scheme to name; Bearer still tells a client that a credential is wanted.
  if (challenges.size === 0 && apiKeyHeader) challenges.add(BEARER_CHALLENGE);
  return deny(rule, require.includes("login") ? "login_required" : "credential_missing", "unauthenticated", `target "${target}" needs ${list}`, {
    ...(challenges.size > 0 ? { wwwAuthenticate: [...challenges] } : {}),
    ...(require.includes("login") ? { signIn: true } : {}),
  });
}

/** A presented client key or token that is not good: 401 with RFC 6750's invalid_token. */
export function invalidBearer(rule: string, reason: AccessDenialReason, message: string): AccessDenied {
  return deny(rule, reason, "unauthenticated", message, { wwwAuthenticate: [INVALID_TOKEN_CHALLENGE] });
}

export function tooManyFailures(rule: string, waitMs: number): AccessDenied {
  const seconds = Math.max(1, Math.ceil(waitMs / 1000));
  return deny(rule, "too_many_failures", "resource_exhausted", `too many failed attempts from this address: retry in ${seconds}s`, {
    retryAfterSeconds: seconds,
    headers: { "retry-after": String(seconds) },
  });
}

/** Anything the engine did not expect: refused (fail closed), and nothing of the cause shown. */
export function policyUnusable(rule: string, tenant: string, cause: unknown): AccessDenied {
  const denied = deny(rule, "policy_unusable", "internal", `the access policy of tenant "${tenant}" cannot be applied to this request`);
  return { ...denied, error: new FerryError("internal", "policy_unusable", denied.error.message, { cause }) };
}
