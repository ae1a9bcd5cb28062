import { createHash, randomBytes } from "node:crypto";
import { setNewest } from "../../core/bounded-map.js";
import { FerryError } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import type { AccessControl, LoginTarget } from "../access/access-control.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { RefusalLimiter } from "../audit/refusal-limiter.js";
import type { SecretBox } from "../auth/secret-box.js";
import { sameSecret } from "../auth/secrets.js";
import type { NodeRequest, NodeResponse } from "../http/http-error.js";
import { cookieName, type CookieScope, cookieValue, sessionCookieName, sessionCookieScope, setCookie, STATE_COOKIE } from "../access/login-cookies.js";
import { sendPage, sendRedirect } from "./login-page.js";
import { checkSession, MAX_SESSION_COOKIE_CHARS, sealSession, sessionFromClaims, sessionRefusal, sessionScopeOf, sessionStart } from "../access/login-session.js";
import type { OidcClient } from "./oidc-client.js";

/** The relay's paths on every app that signs people in: below the app's own root, so they never leave its origin or prefix. */
export const LOGIN_PATH_PREFIX = "/.ferry/";
const LOGIN = "/.ferry/login";
const CALLBACK = "/.ferry/callback";
const LOGOUT = "/.ferry/logout";
const LOGGED_OUT = "/.ferry/logged-out";

/** How long a sign-in may take at the provider (the state cookie's life). */
export const SIGN_IN_MS = 10 * 60_000;
/** Sign-ins completed on this node, remembered for SIGN_IN_MS so a callback cannot be replayed (the provider's codes are single-use too). */
const MAX_COMPLETED = 100_000;
const MAX_RETURN_CHARS = 2048;

export type LoginOutcome = "success" | "refused" | "failed" | "logout";

export interface LoginRoutesDeps {
  access: AccessControl;
  oidc: OidcClient;
  secrets: SecretBox;
  audit: AuditLog;
  log: Logger;
  /** Bounds the audit events of refused and failed sign-ins per source (anyone can start one). */
  refusals: RefusalLimiter;
  /** Counts sign-ins and sign-outs by outcome (ferry_logins_total). */
  count(tenant: string, outcome: LoginOutcome): void;
  now?: () => number;
}

/** Where the request came in, as the gateway vouches for it. */
export interface LoginContext {
  /** The gateway's RelayPath: prefix "/relay/{tenant}/{target}" for path routing, "" on the app's own host. */
  where: { tenant: string; target: string; path: string; query: string; prefix: string };
  clientAddress: string;
  /** scheme://host the browser used (X-Forwarded-Proto and -Host only from --trust-proxy addresses). */
  origin: string;
  secure: boolean;
}

export interface LoginRoutes {
  /**
   * Answers the request when it is for one of the sign-in paths of a target that signs people in; undefined
   * otherwise (the request goes to the target as any other). Rejects only with FerryError (the gateway's error answer).
   */
  serve(req: NodeRequest, res: NodeResponse, ctx: LoginContext): Promise<void> | undefined;
}

interface SignIn {
  /** state, nonce, PKCE verifier, return path within the app, the provider's issuer and our client id there, when it began. */
  s: string;
  n: string;
  v: string;
  r: string;
  i: string;
  c: string;
  at: number;
}

/**
 * OpenID Connect sign-in at the relay, per target: the authorization code
 * flow with PKCE (S256), state and nonce. Nothing of a sign-in under way is
 * kept on the node: it travels sealed in a short-lived cookie scoped to the
 * callback, so the provider may send the browser back to any node. The
 * session that results is a sealed cookie too (login-session.ts).
 */
export function createLoginRoutes(deps: LoginRoutesDeps): LoginRoutes {
  const now = deps.now ?? Date.now;
  const completed = new Map<string, number>();

  const audit = (ctx: LoginContext, action: string, actor: string, details: Record<string, unknown>, always: boolean) => {
    // Successes and sign-outs name a person; refusals could come from anyone, as fast as they like.
    const suppressed = always ? 0 : deps.refusals.admit(ctx.clientAddress);
    if (suppressed === undefined) return;
    const left = suppressed > 0 ? { suppressedBefore: suppressed } : {};
    deps.audit.record({ action, actor, tenant: ctx.where.tenant, details: { target: ctx.where.target, clientAddress: ctx.clientAddress, ...details, ...left } });
  };

  /**
   * The rule's address lists, the source's back-off and its rate limit by ip or rule, as for the app itself:
   * throws the refusal (its Retry-After set on `res`), audited and counted as a refused sign-in.
   */
  const screen = (res: NodeResponse, ctx: LoginContext, found: LoginTarget) => {
    const refusal = found.screen(ctx.clientAddress);
    if (!refusal) return;
    deps.count(ctx.where.tenant, "refused");
    audit(ctx, "login.refused", `client:${ctx.clientAddress}`, { rule: refusal.rule, why: refusal.reason }, false);
    for (const [name, value] of Object.entries(refusal.headers ?? {})) res.setHeader(name, value);
    throw refusal.error;
  };

  const begin = async (res: NodeResponse, ctx: LoginContext, found: LoginTarget, returnTo: string) => {
    screen(res, ctx, found);
    const endpoints = await deps.oidc.endpoints(found.login.issuer);
    const signIn: SignIn = { s: random(16), n: random(16), v: random(32), r: returnTo, i: found.login.issuer, c: found.login.clientId, at: now() };
    const url = new URL(endpoints.authorization);
    for (const [k, v] of Object.entries({
      response_type: "code",
      client_id: found.login.clientId,
      redirect_uri: redirectUri(ctx),
      scope: found.login.scopes.join(" "),
      state: signIn.s,
      nonce: signIn.n,
      code_challenge: createHash("sha256").update(signIn.v).digest("base64url"),
      code_challenge_method: "S256",
    })) {
      url.searchParams.set(k, v);
    }
    const sealed = deps.secrets.seal("login-state", JSON.stringify(signIn), stateContext(ctx));
    sendRedirect(res, url.href, { "set-cookie": setCookie(cookieName(STATE_COOKIE, stateScope(ctx)), sealed, stateScope(ctx), SIGN_IN_MS / 1000) });
  };

  const callback = async (req: NodeRequest, res: NodeResponse, ctx: LoginContext, query: URLSearchParams, first: LoginTarget) => {
    const signIn = openSignIn(deps.secrets, cookieValue(req.headers.cookie, cookieName(STATE_COOKIE, stateScope(ctx))), ctx, now());
    const found = signIn ? deps.access.loginFor(ctx.where.tenant, ctx.where.target, signIn.r.split("?")[0]!) ?? first : first;
    screen(res, ctx, found);
    const clearState = setCookie(cookieName(STATE_COOKIE, stateScope(ctx)), "", stateScope(ctx), 0);
    const again = { href: `${ctx.where.prefix}${LOGIN}`, text: "Sign in again" };
    /**
     * `counted`: the provider refused the code, so the callback cost it a request with the client secret: the
     * source's back-off counts that as a wrong credential. Nothing else is counted: a state that does not match
     * (two tabs, a page of another site sending the browser here) costs nothing, and must not let another site put
     * an office's address into back-off.
     */
    const failed = (status: number, reason: string, message: string, counted = false) => {
      if (counted) found.failed(ctx.clientAddress);
      deps.count(ctx.where.tenant, "failed");
      audit(ctx, "login.failed", `client:${ctx.clientAddress}`, { reason }, false);
      sendPage(res, status, "Sign-in did not complete", message, again, { "set-cookie": clearState });
    };
    const state = query.get("state") ?? "";
    // A state cookie gone stale (a sign-in left open at the provider, another browser) is no attack.
    if (!signIn) return failed(400, "state_missing", "This sign-in has expired or was started in another browser. Start again.");
    if (!sameSecret(state, signIn.s)) return failed(400, "state_mismatch", "This sign-in does not match the one this browser started. Start again.");
    if ((completed.get(signIn.s) ?? 0) > now()) return failed(400, "state_replayed", "This sign-in was already completed. Start again.");
    const providerError = query.get("error");
    if (providerError !== null) {
      const code = /^[a-z_]{1,64}$/.test(providerError) ? providerError : "error";
      return failed(401, `provider_${code}`, `The identity provider did not sign you in (${code}).`);
    }
    const code = query.get("code") ?? "";
    if (code === "" || code.length > 4096) return failed(400, "code_missing", "The identity provider sent no authorization code. Start again.");
    // The code is the provider's the sign-in began at: never sent to another one the policy names since (mix-up).
    if (signIn.i !== found.login.issuer || signIn.c !== found.login.clientId) {
      return failed(400, "login_changed", "This app's sign-in changed while you were signing in. Start again.");
    }
    // Taken before the provider is asked: a second callback with the same state while the first is in flight loses.
    setNewest(completed, signIn.s, signIn.at + SIGN_IN_MS, MAX_COMPLETED);
    let claims: Record<string, unknown>;
    try {
      claims = await deps.oidc.redeem(found.login, code, redirectUri(ctx), signIn.v, signIn.n);
    } catch (err) {
      if (!(err instanceof FerryError)) throw err;
      // The code is spent or stale either way (and the state with it): a page with the way to start again.
      if (err.kind === "unavailable") return failed(503, err.code, `${err.message[0]!.toUpperCase()}${err.message.slice(1)}.`);
      if (err.kind !== "unauthenticated") throw err;
      return failed(401, err.code, err.message, err.code === "code_refused");
    }
    const session = sessionFromClaims(claims, found.claimRules, sessionStart(now(), found.login), found.login.maxMs);
    const refusal = sessionRefusal(session, found.login);
    if (refusal) {
      deps.count(ctx.where.tenant, "refused");
      audit(ctx, "login.refused", `login:${session.sub}`, { rule: found.rule, ...(session.email ? { email: session.email } : {}), why: refusal }, false);
      // Signing out at the provider too is what lets the person try another account.
      const other = { href: `${ctx.where.prefix}${LOGOUT}`, text: "Sign out and use another account" };
      return sendPage(res, 403, "You cannot use this app", refusal, other, { "set-cookie": clearState });
    }
    const scope = sessionScopeOf(ctx.where.tenant, ctx.where.target, found.login);
    const sealed = sealSession(deps.secrets, session, scope);
    if (sealed.length > MAX_SESSION_COOKIE_CHARS) {
      return failed(500, "session_too_large", "Your account's details are too large for a session (too many groups or claims). Ask the operator.");
    }
    found.succeeded(ctx.clientAddress);
    deps.count(ctx.where.tenant, "success");
    audit(ctx, "login", `login:${session.sub}`, { rule: found.rule, ...(session.email ? { email: session.email } : {}) }, true);
    sendRedirect(res, `${ctx.where.prefix}${signIn.r}`, {
      "set-cookie": [setCookie(sessionName(ctx), sealed, sessionCookieScope(ctx.where.prefix, ctx.secure), found.login.maxMs / 1000), clearState],
    });
  };

  // Not screened: signing out must work for anyone, whatever the rule's rate limit or the address's back-off.
  const logout = async (req: NodeRequest, res: NodeResponse, ctx: LoginContext, found: LoginTarget) => {
    // Another site (a sibling app's host among them) must not sign people out: it gets a button to press instead.
    if (!fromThisApp(req, ctx.origin)) {
      if (req.method === "POST") throw new FerryError("permission_denied", "cross_site_logout", "sign out from the app's own pages");
      return sendPage(res, 200, "Sign out?", "Sign out of this app.", { href: `${ctx.where.prefix}${LOGOUT}`, text: "Sign out", post: true });
    }
    const scope = sessionScopeOf(ctx.where.tenant, ctx.where.target, found.login);
    const verdict = checkSession(deps.secrets, cookieValue(req.headers.cookie, sessionName(ctx)), scope, found.login, now());
    const cleared = { "set-cookie": setCookie(sessionName(ctx), "", sessionCookieScope(ctx.where.prefix, ctx.secure), 0) };
    if (verdict.ok) {
      deps.count(ctx.where.tenant, "logout");
      // Bounded per source as refusals are: a session is a cookie, so one stolen could be signed out of endlessly.
      audit(ctx, "logout", `login:${verdict.session.sub}`, { rule: found.rule }, false);
    }
    // The provider's own session too, where it offers that: else the next sign-in would pass without a password.
    const endpoints = await deps.oidc.endpoints(found.login.issuer).catch(() => undefined);
    if (endpoints?.endSession) {
      const url = new URL(endpoints.endSession);
      url.searchParams.set("client_id", found.login.clientId);
      url.searchParams.set("post_logout_redirect_uri", `${ctx.origin}${ctx.where.prefix}${LOGGED_OUT}`);
      return sendRedirect(res, url.href, cleared);
    }
    sendPage(res, 200, "Signed out", "You are signed out of this app.", { href: `${ctx.where.prefix}/`, text: "Back to the app" }, cleared);
  };

  return {
    serve(req, res, ctx) {
      const path = ctx.where.path;
      if (!path.startsWith(LOGIN_PATH_PREFIX)) return undefined;
      const found = deps.access.loginFor(ctx.where.tenant, ctx.where.target);
      if (!found) return undefined;
      const query = new URLSearchParams(ctx.where.query);
      const method = req.method ?? "GET";
      const reads = method === "GET" || method === "HEAD";
      switch (path) {
        case LOGIN: {
          if (!reads) return methodNotAllowed();
          const returnTo = returnPath(query.get("return"));
          if (returnTo === undefined) return Promise.reject(new FerryError("invalid_argument", "bad_return_path", "return must be a path of this app, starting with a single /"));
          const forPath = deps.access.loginFor(ctx.where.tenant, ctx.where.target, returnTo.split("?")[0]!) ?? found;
          return begin(res, ctx, forPath, returnTo);
        }
        case CALLBACK:
          return reads ? callback(req, res, ctx, query, found) : methodNotAllowed();
        case LOGOUT:
          return reads || method === "POST" ? logout(req, res, ctx, found) : methodNotAllowed();
        case LOGGED_OUT:
          if (!reads) return methodNotAllowed();
          sendPage(res, 200, "Signed out", "You are signed out.", { href: `${ctx.where.prefix}/`, text: "Sign in again" });
          return Promise.resolve();
        default:
          return Promise.reject(new FerryError("not_found", "not_found", `${path} is not one of the relay's sign-in paths (${LOGIN}, ${LOGOUT})`));
      }
    },
  };
}

function methodNotAllowed(): Promise<void> {
  return Promise.reject(new FerryError("invalid_argument", "method_not_allowed", "the sign-in paths answer GET (and POST for logout)"));
}

/**
 * The path to land on after signing in: within the app only (no open
 * redirect). A single leading "/", no backslash (browsers read "/\\x" as
 * "//x", another host), printable ASCII only. Default: the app's root.
 */
export function returnPath(value: string | null): string | undefined {
  if (value === null || value === "") return "/";
  if (value.length > MAX_RETURN_CHARS || !value.startsWith("/") || value.startsWith("//")) return undefined;
  // What a Location header can carry as it is: printable ASCII (a browser sends the rest percent-encoded).
  if (!/^[\x21-\x7e]+$/.test(value) || value.includes("\\")) return undefined;
  // Under path routing "/../../other-tenant/app/" would leave the app's prefix: no dot segment, plain or encoded.
  if (/(^|\/)(\.|%2e){1,2}(\/|\?|#|$)/i.test(value.split("?")[0]!)) return undefined;
  return value;
}

/**
 * Whether the request comes from the app's own pages (or the person typed it): Fetch Metadata's same-origin or
 * none, else an Origin of the app's. "same-site" is not enough: a sibling host may be another tenant's app.
 */
function fromThisApp(req: NodeRequest, origin: string): boolean {
  const site = req.headers["sec-fetch-site"];
  if (site !== undefined) return site === "same-origin" || site === "none";
  return req.headers.origin === origin;
}

function redirectUri(ctx: LoginContext): string {
  return `${ctx.origin}${ctx.where.prefix}${CALLBACK}`;
}

/** The callback's path only, but a host-routed app's root over TLS, where a __Host- name keeps sibling hosts out. */
function stateScope(ctx: LoginContext): CookieScope {
  const hostRoot = ctx.secure && ctx.where.prefix === "";
  return { path: hostRoot ? "/" : `${ctx.where.prefix}${CALLBACK}`, secure: ctx.secure };
}

function sessionName(ctx: LoginContext): string {
  return sessionCookieName(ctx.where.prefix, ctx.secure);
}

function stateContext(ctx: LoginContext): string {
  return `${ctx.where.tenant}\0${ctx.where.target}`;
}

function openSignIn(box: SecretBox, cookie: string, ctx: LoginContext, now: number): SignIn | undefined {
  if (cookie === "") return undefined;
  const text = box.open("login-state", cookie, stateContext(ctx));
  if (text === undefined) return undefined;
  try {
    const s = JSON.parse(text) as SignIn;
    const strings = [s.s, s.n, s.v, s.r, s.i, s.c].every((v) => typeof v === "string" && v !== "");
    if (!strings || typeof s.at !== "number" || now - s.at > SIGN_IN_MS || now < s.at - 60_000 || returnPath(s.r) === undefined) return undefined;
    return s;
  } catch {
    return undefined;
  }
}

function random(bytes: number): string {
  return randomBytes(bytes).toString("base64url");
}
