/** The signed-in session (login-session.ts): scoped to the app's host, or to its /relay/{tenant}/{target}/ path. */
export const SESSION_COOKIE = "ferry_session";
/** A sign-in under way (state, nonce, PKCE verifier, return URL): scoped to the callback path, gone after it. */
export const STATE_COOKIE = "ferry_login";
const HOST_PREFIX = "__Host-";
/** The relay's own cookies, never passed on to a target. */
export const LOGIN_COOKIES: readonly string[] = [SESSION_COOKIE, STATE_COOKIE, `${HOST_PREFIX}${SESSION_COOKIE}`, `${HOST_PREFIX}${STATE_COOKIE}`];

/**
 * The name of one of the relay's cookies in `scope`. At a host's root over TLS (a host-routed app) it carries the
 * __Host- prefix: browsers then take it only from that very host, Secure, Path=/, never with a Domain, so a page on
 * a sibling host (another tenant's app under the same base domain) cannot plant one (cookie tossing: signing a
 * person in as someone else). Path-routed apps share one origin, which no cookie name can divide.
 */
export function cookieName(name: typeof SESSION_COOKIE | typeof STATE_COOKIE, scope: CookieScope): string {
  return scope.secure && scope.path === "/" ? `${HOST_PREFIX}${name}` : name;
}

/** The value of the first cookie called `name` in a Cookie header ("" when there is none). */
export function cookieValue(header: string | string[] | undefined, name: string): string {
  for (const line of Array.isArray(header) ? header : header === undefined ? [] : [header]) {
    for (const pair of line.split(";")) {
      const eq = pair.indexOf("=");
      if (eq > 0 && pair.slice(0, eq).trim() === name) return pair.slice(eq + 1).trim();
    }
  }
  return "";
}

/**
 * A Cookie header without the relay's login cookies; undefined when nothing
 * is left. The target gets the app's own cookies only: a session cookie it
 * saw could be replayed by it, or by whoever reads its logs.
 */
export function withoutLoginCookies(header: string): string | undefined {
  const kept = header.split(";").filter((pair) => {
    const eq = pair.indexOf("=");
    return !LOGIN_COOKIES.includes((eq < 0 ? pair : pair.slice(0, eq)).trim());
  });
  const joined = kept.map((p) => p.trim()).filter(Boolean).join("; ");
  return joined === "" ? undefined : joined;
}

export interface CookieScope {
  /** Path=...: "/" for a host-routed app, "/relay/{tenant}/{target}/" for a path-routed one. */
  path: string;
  /** The request came over TLS: the cookie is Secure (browsers keep Secure cookies from http only on localhost). */
  secure: boolean;
}

/** Where an app's session cookie goes: its /relay/{tenant}/{target}/ (`prefix` without the slash), or its host's root. */
export function sessionCookieScope(prefix: string, secure: boolean): CookieScope {
  return { path: `${prefix}/`, secure };
}

/** The session cookie's name for an app at `prefix` (sessionCookieScope). */
export function sessionCookieName(prefix: string, secure: boolean): string {
  return cookieName(SESSION_COOKIE, sessionCookieScope(prefix, secure));
}

/**
 * A Set-Cookie for one of the relay's cookies: HttpOnly (scripts of the app
 * never see it), SameSite=Lax (sent on the top-level navigation back from
 * the identity provider, not on cross-site subrequests), host-only (no
 * Domain), Secure on TLS. `maxAgeSeconds` 0 deletes it.
 */
export function setCookie(name: string, value: string, scope: CookieScope, maxAgeSeconds: number): string {
  return `${name}=${value}; Path=${scope.path}; Max-Age=${Math.max(0, Math.floor(maxAgeSeconds))}; HttpOnly; SameSite=Lax${scope.secure ? "; Secure" : ""}`;
}
