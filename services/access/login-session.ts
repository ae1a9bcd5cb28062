import type { Value } from "@bufbuild/protobuf/wkt";
import { optional } from "../../core/optional.js";
import type { SecretBox } from "../auth/secret-box.js";
import { claimsAskedFor, claimsMatch } from "./jwt-claims.js";

/** Who signed in, as the provider's ID token said, and when: what the session cookie carries, sealed. */
export interface LoginSession {
  sub: string;
  email?: string;
  emailVerified?: boolean;
  name?: string;
  groups?: string[];
  /** The claims the tenant's login rules for this target ask for, as the ID token had them. */
  claims: Record<string, unknown>;
  /** Sign-in, last use (to the minute: see SESSION_TOUCH_MS), and the end however used: ms since the epoch. */
  iat: number;
  seen: number;
  exp: number;
}

/** What a session is good for: one tenant's target, signed in at one provider with one client. */
export interface SessionScope {
  tenant: string;
  target: string;
  issuer: string;
  clientId: string;
}

/** What a login rule asks of a session (compile-policy.ts). */
export interface SessionRule {
  idleMs: number;
  maxMs: number;
  allowedEmailDomains: readonly string[];
  claims: Readonly<Record<string, Value>>;
  /** Sessions begun before this (ms since the epoch; 0: none) are over (LoginRule.sessions_not_before). */
  notBeforeMs: number;
}

/** A rule's sign-in, ready to use (compile-policy.ts): the client secret opened once, durations in ms. */
export interface CompiledLogin extends SessionRule {
  issuer: string;
  clientId: string;
  clientSecret: string;
  scopes: readonly string[];
}

/** A session's last use is written again at most this often: each time costs a Set-Cookie on a response. */
export const SESSION_TOUCH_MS = 60_000;
/** Browsers keep cookies of up to 4096 bytes; a session larger than this is refused at sign-in. */
export const MAX_SESSION_COOKIE_CHARS = 3800;

const MAX_TEXT = 512;
const MAX_GROUPS = 100;

export function sealSession(box: SecretBox, session: LoginSession, scope: SessionScope): string {
  return box.seal("login-session", JSON.stringify(session), contextOf(scope));
}

export type SessionVerdict = { ok: true; session: LoginSession } | { ok: false; reason: "missing" | "invalid" | "expired" };

/**
 * Opens a session cookie for `scope` and checks its age against the rule: a
 * cookie of another tenant, target or provider does not open (its sealing is
 * bound to them), a tampered one neither. Never throws.
 */
export function checkSession(box: SecretBox, cookie: string, scope: SessionScope, rule: SessionRule, now: number): SessionVerdict {
  if (cookie === "") return { ok: false, reason: "missing" };
  const text = box.open("login-session", cookie, contextOf(scope));
  const session = text === undefined ? undefined : parseSession(text);
  if (!session) return { ok: false, reason: "invalid" };
  if (now >= Math.min(session.exp, session.iat + rule.maxMs) || now - session.seen >= rule.idleMs || session.iat < rule.notBeforeMs) {
    return { ok: false, reason: "expired" };
  }
  return { ok: true, session };
}

/** How far another node's clock may be ahead of this one's when it ends sessions (sessions_not_before). */
const CLOCK_SKEW_MS = 60_000;

/**
 * When a session begun now starts: no earlier than the rule's sessions_not_before as this node knows it (within
 * CLOCK_SKEW_MS), so a node whose clock is behind the one that ended the sessions does not hand out sessions that
 * are over at once, a sign-in loop (`access set` refuses a time further ahead).
 */
export function sessionStart(now: number, rule: Pick<SessionRule, "notBeforeMs">): number {
  return Math.max(now, Math.min(rule.notBeforeMs, now + CLOCK_SKEW_MS));
}

/** Why the rule does not take this person (a readable sentence), or undefined when it does. */
export function sessionRefusal(session: LoginSession, rule: SessionRule): string | undefined {
  if (rule.allowedEmailDomains.length > 0) {
    const at = session.email?.lastIndexOf("@") ?? -1;
    const domain = at < 0 ? "" : session.email!.slice(at + 1).toLowerCase();
    if (session.emailVerified !== true || !rule.allowedEmailDomains.includes(domain)) {
      return `This app is for ${rule.allowedEmailDomains.join(", ")} accounts with a verified email address; ${session.email ? `${session.email} is not one` : "yours has no email address"}.`;
    }
  }
  if (!claimsMatch(session.claims, rule.claims)) return "Your account does not carry what this app requires (e.g. membership of its group).";
  return undefined;
}

/** The session for a verified ID token's claims: only what the identity and the rules need, bounded. */
export function sessionFromClaims(claims: Record<string, unknown>, claimRules: readonly Readonly<Record<string, Value>>[], now: number, maxMs: number): LoginSession {
  const text = (v: unknown) => (typeof v === "string" && v.length <= MAX_TEXT ? v : undefined);
  const groups = Array.isArray(claims.groups) ? claims.groups.filter((g): g is string => typeof g === "string" && g.length <= MAX_TEXT).slice(0, MAX_GROUPS) : undefined;
  const kept = claimsAskedFor(claims, claimRules);
  return {
    sub: String(claims.sub),
    ...optional("email", text(claims.email)),
    ...(claims.email_verified === true ? { emailVerified: true } : {}),
    ...optional("name", text(claims.name)),
    ...(groups ? { groups } : {}),
    claims: kept,
    iat: now,
    seen: now,
    exp: now + maxMs,
  };
}

/** The scope of a target's sessions under its login rule. */
export function sessionScopeOf(tenant: string, target: string, login: Pick<CompiledLogin, "issuer" | "clientId">): SessionScope {
  return { tenant, target, issuer: login.issuer, clientId: login.clientId };
}

function contextOf(scope: SessionScope): string {
  // NUL cannot occur in any part (DNS labels, URLs, a client id of printable ASCII).
  return `${scope.tenant}\0${scope.target}\0${scope.issuer}\0${scope.clientId}`;
}

/** Sealed by us, so well formed unless a key leaked; checked anyway, since what it says reaches the target. */
function parseSession(text: string): LoginSession | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== "object" || v === null) return undefined;
  const s = v as Partial<LoginSession>;
  const finite = (n: unknown) => typeof n === "number" && Number.isFinite(n);
  if (typeof s.sub !== "string" || s.sub === "" || !finite(s.iat) || !finite(s.seen) || !finite(s.exp)) return undefined;
  if (typeof s.claims !== "object" || s.claims === null) return undefined;
  if (s.groups !== undefined && (!Array.isArray(s.groups) || !s.groups.every((g) => typeof g === "string"))) return undefined;
  for (const k of ["email", "name"] as const) if (s[k] !== undefined && typeof s[k] !== "string") return undefined;
  return s as LoginSession;
}
