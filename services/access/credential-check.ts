import type { JwtRule } from "../../gen/ferry/access/v1/access_policy_pb.js";
import { FerryError } from "../../core/errors.js";
import { bearer } from "../auth/bearer.js";
import type { AccessDenied, AccessRequest, ClientKeyCheck, CredentialKind, LoginProfile, MaybeAsync } from "./access-control.js";
import { BASIC_CHALLENGE, credentialMissing, deny, invalidBearer, tooManyFailures } from "./access-denials.js";
import { parseBasicAuthorization } from "./basic-auth.js";
import type { CompiledRule } from "./compile-policy.js";
import type { SecretBox } from "../auth/secret-box.js";
import { cookieValue, SESSION_COOKIE } from "./login-cookies.js";
import { checkSession, sealSession, SESSION_TOUCH_MS, sessionRefusal, sessionScopeOf } from "./login-session.js";

export interface CredentialDeps {
  checkClientKey(secret: string): ClientKeyCheck;
  /** The operator's keys, which seal login sessions; without them no "login" rule compiles. */
  secrets?: SecretBox;
  /** Fails (throws or rejects) with FerryError kind "unauthenticated", code "jwt_expired" | "jwt_invalid" | "jwt_claims". */
  verifyJwt(token: string, rule: JwtRule): MaybeAsync<{ subject: string }>;
  now: () => number;
}

export type CredentialOutcome =
  | { ok: true; method: CredentialKind; subject: string; consumed: readonly string[]; profile?: LoginProfile; renewedSession?: { cookie: string; maxAgeSeconds: number } }
  /** `failure`: a wrong credential, which counts against its source's back-off (a genuine one refused for scope or expiry does not). */
  | { ok: false; denial: AccessDenied; failure: boolean };

const NOTHING: readonly string[] = Object.freeze([]);

/** Client keys are "fcl_<id>_<secret>": a bearer with this prefix is a key, never a token. */
export const CLIENT_KEY_PREFIX = "fcl_";

/**
 * Checks the first credential the request actually carries among those the
 * rule accepts, in the rule's order; the others are not looked at. One
 * Authorization: Bearer serves both apiKey and jwt: a client key is told
 * from a token by its prefix, and when the rule takes only one of the two,
 * any bearer is checked as that one (and fails as it). At once for a client
 * key, a certificate and a token verified before; a promise otherwise.
 */
export function checkCredential(deps: CredentialDeps, rule: CompiledRule, req: AccessRequest): MaybeAsync<CredentialOutcome> {
  const authorization = first(req.headers.authorization);
  const presented = bearer(authorization);
  const keyAsBearer = rule.require.includes("apiKey") && rule.apiKeyHeader === undefined;
  for (const kind of rule.require) {
    switch (kind) {
      case "apiKey": {
        const secret = rule.apiKeyHeader
          ? first(req.headers[rule.apiKeyHeader]).trim()
          : presented !== "" && (presented.startsWith(CLIENT_KEY_PREFIX) || !rule.require.includes("jwt"))
            ? presented
            : "";
        if (secret !== "") return clientKey(deps, rule, req, secret);
        break;
      }
      case "jwt":
        if (presented !== "" && (!presented.startsWith(CLIENT_KEY_PREFIX) || !keyAsBearer)) return token(deps, rule, presented);
        break;
      case "mtls":
        if (req.clientCertificate?.raw) return certificate(deps, rule, req);
        break;
      case "login": {
        const cookie = cookieValue(req.cookie, req.sessionCookie ?? SESSION_COOKIE);
        if (cookie !== "") return session(deps, rule, req, cookie);
        break;
      }
      case "basic": {
        const credentials = parseBasicAuthorization(authorization);
        if (credentials === "malformed") return basicRefused(rule, "the Authorization: Basic header cannot be read (base64 of user:password)");
        if (credentials !== undefined) {
          return rule.basic!.verify(credentials).then((verdict): CredentialOutcome => {
            if (verdict === "ok") return { ok: true, method: "basic", subject: credentials.user, consumed: rule.consumes.basic };
            // The gate on scrypt is full: nothing was checked, so nothing counts against the source.
            if (verdict === "busy") return { ok: false, denial: tooManyFailures(rule.name, 1000), failure: false };
            return basicRefused(rule, "the user name or password is not valid");
          });
        }
        break;
      }
    }
  }
  return { ok: false, denial: credentialMissing(rule.name, req.target, rule.require, rule.apiKeyHeader), failure: false };
}

function clientKey(deps: CredentialDeps, rule: CompiledRule, req: AccessRequest, secret: string): CredentialOutcome {
  const key = deps.checkClientKey(secret);
  if (!key.ok) {
    const [reason, message] =
      key.reason === "revoked"
        ? (["api_key_revoked", "the client key was revoked"] as const)
        : key.reason === "expired"
          ? (["api_key_expired", "the client key has expired"] as const)
          : (["api_key_invalid", "the client key is not valid"] as const);
    return { ok: false, denial: invalidBearer(rule.name, reason, message), failure: true };
  }
  // Another tenant's key is no key here, and reads exactly like an unknown one.
  if (key.tenant !== req.tenant) return { ok: false, denial: invalidBearer(rule.name, "api_key_invalid", "the client key is not valid"), failure: true };
  if (key.targets.length > 0 && !key.targets.includes(req.target)) {
    const denial = deny(rule.name, "api_key_wrong_target", "permission_denied", `the client key is not valid for target "${req.target}"`);
    return { ok: false, denial, failure: false };
  }
  return { ok: true, method: "apiKey", subject: key.keyId, consumed: rule.consumes.apiKey };
}

function token(deps: CredentialDeps, rule: CompiledRule, presented: string): MaybeAsync<CredentialOutcome> {
  let verified: MaybeAsync<{ subject: string }>;
  try {
    verified = deps.verifyJwt(presented, rule.jwt!);
  } catch (err) {
    return tokenRefused(rule, err);
  }
  if (verified instanceof Promise) return verified.then((v) => tokenGranted(rule, v.subject), (err: unknown) => tokenRefused(rule, err));
  return tokenGranted(rule, verified.subject);
}

function tokenGranted(rule: CompiledRule, subject: string): CredentialOutcome {
  return { ok: true, method: "jwt", subject, consumed: rule.consumes.jwt };
}

function tokenRefused(rule: CompiledRule, err: unknown): CredentialOutcome {
  // By code, whatever the kind (jwt_claims is permission_denied); anything else is not the client's doing.
  if (!(err instanceof FerryError) || !(err.kind === "unauthenticated" || err.code === "jwt_claims")) throw err;
  // jwt_expired and jwt_claims come after the signature verified: a genuine token, not a guess.
  if (err.code === "jwt_claims") return { ok: false, denial: deny(rule.name, "jwt_claims", "permission_denied", err.message), failure: false };
  if (err.code === "jwt_expired") return { ok: false, denial: invalidBearer(rule.name, "jwt_expired", err.message), failure: false };
  return { ok: false, denial: invalidBearer(rule.name, "jwt_invalid", err.message), failure: true };
}

function certificate(deps: CredentialDeps, rule: CompiledRule, req: AccessRequest): CredentialOutcome {
  const verdict = rule.certificates!.verify(req.clientCertificate!, deps.now());
  if (verdict.ok) return { ok: true, method: "mtls", subject: verdict.subject, consumed: NOTHING };
  const denial = deny(rule.name, "certificate_invalid", "unauthenticated", `the client certificate was not accepted: ${verdict.reason}`);
  return { ok: false, denial, failure: true };
}

function session(deps: CredentialDeps, rule: CompiledRule, req: AccessRequest, cookie: string): CredentialOutcome {
  const login = rule.login!;
  const scope = sessionScopeOf(req.tenant, req.target, login);
  const now = deps.now();
  const verdict = checkSession(deps.secrets!, cookie, scope, login, now);
  if (!verdict.ok) {
    // Never counted against the source's back-off: a sealed session cannot be guessed (a 128-bit tag), and after a
    // key rotation every browser of an office behind one address would bring one that no longer opens.
    const [reason, message] =
      verdict.reason === "expired" ? (["login_expired", "the session has ended: sign in again"] as const) : (["login_required", "the session is not valid: sign in again"] as const);
    return { ok: false, denial: deny(rule.name, reason, "unauthenticated", message, { signIn: true }), failure: false };
  }
  const s = verdict.session;
  const refusal = sessionRefusal(s, login);
  if (refusal) return { ok: false, denial: deny(rule.name, "login_refused", "permission_denied", refusal), failure: false };
  const profile: LoginProfile = { ...(s.email ? { email: s.email } : {}), ...(s.name ? { name: s.name } : {}), ...(s.groups ? { groups: s.groups } : {}) };
  const renewed =
    now - s.seen >= SESSION_TOUCH_MS
      ? { cookie: sealSession(deps.secrets!, { ...s, seen: now }, scope), maxAgeSeconds: (Math.min(s.exp, s.iat + login.maxMs) - now) / 1000 }
      : undefined;
  return { ok: true, method: "login", subject: s.sub, consumed: NOTHING, profile, ...(renewed ? { renewedSession: renewed } : {}) };
}

function basicRefused(rule: CompiledRule, message: string): CredentialOutcome {
  // The Basic challenge again, so a browser asks for the password once more.
  return { ok: false, denial: deny(rule.name, "basic_invalid", "unauthenticated", message, { wwwAuthenticate: [BASIC_CHALLENGE] }), failure: true };
}

/** A header's value as one string ("" when absent); of a repeated one, the first. */
function first(value: string | string[] | undefined): string {
  return (Array.isArray(value) ? value[0] : value) ?? "";
}
