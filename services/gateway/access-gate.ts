import type { Http2ServerRequest } from "node:http2";
import type { PeerCertificate, TLSSocket } from "node:tls";
import type { AccessControl, AccessDecision, AccessGranted, MaybeAsync } from "../access/access-control.js";
import type { NodeRequest, NodeResponse } from "../http/http-error.js";
import type { AccessOutcome } from "../observability/exchange-record.js";
import type { RelayPath } from "./relay-path.js";
import { FerryError } from "../../core/errors.js";
import { sessionCookieName } from "../access/login-cookies.js";
import { LOGIN_PATH_PREFIX } from "../login/login-routes.js";

/**
 * Asks the tenant's access policy about a request, before anything of it
 * reaches a connector. A refusal is thrown (its challenge and rate-limit
 * headers already set on `res`, so the one error writer sends them); a grant
 * is returned with the request headers the relay consumed (the credential;
 * lower-case, as compile-policy.ts makes them), and is what the identity the relay signs for the target says.
 * Both at once when the policy answers at once (see AccessControl.check), else through the promise returned.
 * `record` receives the outcome either way, for metrics and the audit trail.
 */
export function passAccessPolicy(
  access: AccessControl,
  req: NodeRequest,
  res: NodeResponse,
  where: Pick<RelayPath, "tenant" | "target" | "path" | "query" | "prefix">,
  clientAddress: string,
  record: (outcome: AccessOutcome) => void,
  secure: () => boolean,
): MaybeAsync<AccessGranted> {
  const socket = tlsSocketOf(req);
  // Read only by a rule that takes mtls: building the chain's JS objects costs on every TLS request otherwise.
  let certificate: PeerCertificate | undefined | null = null;
  const decision = access.check({
    tenant: where.tenant,
    target: where.target,
    path: where.path,
    clientAddress,
    headers: req.headers,
    cookie: req.headers.cookie,
    tls: socket !== undefined,
    preflight: req.method === "OPTIONS" && req.headers.origin !== undefined && req.headers["access-control-request-method"] !== undefined,
    // Read only by a rule that takes login.
    get sessionCookie() {
      return sessionCookieName(where.prefix, secure());
    },
    get clientCertificate() {
      if (certificate === null) certificate = socket ? peerCertificate(socket) : undefined;
      return certificate;
    },
  });
  return decision instanceof Promise ? decision.then((d) => settle(d, req, res, where, record)) : settle(decision, req, res, where, record);
}

function settle(decision: AccessDecision, req: NodeRequest, res: NodeResponse, where: SignInFrom, record: (outcome: AccessOutcome) => void): AccessGranted {
  if (!decision.allowed) {
    record({ granted: false, rule: decision.rule, reason: decision.reason });
    if (decision.wwwAuthenticate?.length) res.setHeader("www-authenticate", decision.wwwAuthenticate);
    for (const [name, value] of Object.entries(decision.headers ?? {})) res.setHeader(name, value);
    const to = decision.signIn ? signInUrl(req, where) : undefined;
    if (to !== undefined) throw new FerryError(decision.error.kind, decision.error.code, decision.error.message, { signIn: to });
    throw decision.error;
  }
  record({ granted: true, ...(decision.rule ? { rule: decision.rule } : {}), method: decision.method, subject: decision.subject });
  return decision;
}

type SignInFrom = Pick<RelayPath, "path" | "query" | "prefix">;

/** For a browser opening a page: the app's sign-in, coming back to this page after. */
function signInUrl(req: NodeRequest, where: SignInFrom): string | undefined {
  if (!navigation(req)) return undefined;
  return `${where.prefix}${LOGIN_PATH_PREFIX}login?return=${encodeURIComponent(where.query ? `${where.path}?${where.query}` : where.path)}`;
}

/**
 * A browser opening a page (not a script's fetch, not a form post, not a WebSocket): only that is sent to sign in;
 * everything else gets the 401, so an app's JSON call never receives the provider's HTML login page.
 */
function navigation(req: NodeRequest): boolean {
  if (req.method !== "GET" && req.method !== "HEAD") return false;
  if (req.headers.upgrade !== undefined) return false;
  const mode = req.headers["sec-fetch-mode"];
  if (mode !== undefined) return mode === "navigate";
  // Browsers without Fetch Metadata: a navigation asks for HTML.
  return (req.headers.accept ?? "").includes("text/html");
}

/** The request's TLS socket; undefined on cleartext. HTTP/2 requests share their session's. */
function tlsSocketOf(req: NodeRequest): TLSSocket | undefined {
  const socket = "stream" in req ? (req as Http2ServerRequest).stream.session?.socket : req.socket;
  return socket && "encrypted" in socket && socket.encrypted === true ? (socket as TLSSocket) : undefined;
}

/** The client's certificate with its chain, or undefined when it sent none. */
function peerCertificate(socket: TLSSocket): PeerCertificate | undefined {
  const cert = socket.getPeerCertificate(true);
  return cert && Object.keys(cert).length > 0 ? cert : undefined;
}
