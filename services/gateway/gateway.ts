import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import type { BlockList, Socket } from "node:net";
import type { Duplex } from "node:stream";
import { type Frame, type Header, type RequestHead, ResetCode, type ResponseHead } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { durationFromMs, formatDuration, msFromDuration } from "../../core/duration.js";
import { FerryError } from "../../core/errors.js";
import { createIdleSignal } from "../../core/idle-signal.js";
import type { ByteBudget } from "../../core/exchange/byte-budget.js";
import { Exchange, requestHeadFrame } from "../../core/exchange/exchange.js";
import { endToEndHeaders, header, toNodeHeaders } from "../../core/headers.js";
import { newExchangeId } from "../../core/exchange/ids.js";
import { createPausingWriter } from "../../core/exchange/pausing-writer.js";
import { spliceSocket } from "../../core/exchange/splice.js";
import type { Logger } from "../../core/logger.js";
import type { AccessControl, AccessGranted } from "../access/access-control.js";
import type { CaptureStore, CaptureTap } from "../traffic/capture-store.js";
import type { ExchangeBus } from "../bus/exchange-bus.js";
import { IDENTITY_HEADER } from "../identity/identity-claims.js";
import type { IdentityIssuer } from "../identity/identity-reuse.js";
import type { AccessOutcome, ExchangeRecord } from "../observability/exchange-record.js";
import type { Catalog } from "../state/catalog.js";
import type { PeerFaults } from "../limits/peer-faults.js";
import type { Limits } from "../limits/limits.js";
import { authorityOf, canonicalAuthority, isAuthority, requestAuthority } from "./authority.js";
import { FORWARDING_HEADERS, forwardingHeaders } from "./forwarded.js";
import { guardedSink } from "./guarded-sink.js";
import { type NodeRequest, type NodeResponse, respondHeadOnly, responseOnSocket, sendError, toFerryError } from "../http/http-error.js";
import type { HostRouting } from "./host-route.js";
import { parseRelayPath, type RelayPath } from "./relay-path.js";
import { BadResponse, type BadResponseReason, type FramedResponse, frameResponse } from "./response-head.js";
import { hostOnlyCookies } from "./cookie-scope.js";
import { passAccessPolicy } from "./access-gate.js";
import { clientAddressOf } from "../auth/client-address.js";
import { sessionCookieName, sessionCookieScope, setCookie, withoutLoginCookies } from "../access/login-cookies.js";
import { LOGIN_PATH_PREFIX, type LoginRoutes } from "../login/login-routes.js";
import { isolatePathRouted } from "./shared-origin.js";
import { SPOOFABLE_HEADERS } from "./spoofable-headers.js";
import { bodyTooLarge, tenantRefusal } from "./tenant-checks.js";
import { createTenantLoad, type TenantLoad } from "./tenant-load.js";
import { type Trace, traceFor } from "./trace.js";
import { clientTrailers } from "./trailers.js";

/**
 * Request headers the target never gets from the client: the relay sets its own
 * forwarding and trace headers, and no one vouches for the client's claims.
 */
const CLIENT_DROPPED: ReadonlySet<string> = new Set([...FORWARDING_HEADERS, ...SPOOFABLE_HEADERS, "traceparent", "x-request-id"]);

export interface GatewayOptions {
  catalog: Catalog;
  bus: ExchangeBus;
  log: Logger;
  /** Time the target has to start its response, unless the tenant sets its own. */
  requestTimeoutMs: number;
  /** Receive window granted to the connector for each response body. */
  responseWindow: number;
  trustedProxies: BlockList | undefined;
  isDraining(): boolean;
  /** Keep serving new requests while draining (cluster nodes: the connectors are reachable through other nodes). */
  serveWhileDraining?: boolean;
  /** Called once per request when it is over (statistics, metrics, the exchange log, the audit trail). */
  onDone?(record: ExchangeRecord): void;
  /** Routing by {target}.{tenant}.<base domain>, when the relay has a base domain. */
  hostRouting?: HostRouting;
  /** The host name clients use (--public-host), when the operator named it. */
  publicHost?: string;
  limits: Limits;
  faults: PeerFaults;
  /** The tenants' client access policies, applied before an exchange starts. */
  access?: AccessControl;
  /** Signs X-Ferry-Identity for every request a tenant's policy let through (services/identity). */
  identity?: IdentityIssuer;
  /** Captures recording a target's exchanges (the console's inspector). */
  captures?: Pick<CaptureStore, "tap">;
  /** Sign-in at the relay for targets whose rules take "login" (services/login). */
  login?: LoginRoutes;
  /** The admin token id when the request is an administrator's replay (it came from the relay itself): no policy applies. */
  replayOf?(req: NodeRequest): string | undefined;
}

export interface Gateway {
  handle(req: NodeRequest, res: NodeResponse): void;
  /** An HTTP/1.1 Upgrade request (WebSocket): Node has handed over the socket and the bytes read past the head. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Whether the request's authority is a host-routed name: then every path of it belongs to the gateway. */
  routesByHost(req: NodeRequest): boolean;
  /** Exchanges in progress. */
  readonly active: number;
  /** Exchanges in progress for one tenant. */
  activeFor(tenant: string): number;
  /** Resolves when no exchange is in progress. */
  idle(): Promise<void>;
}

/** The client's connection, taken over from Node's HTTP server for an Upgrade request. */
interface Upgrade {
  socket: Duplex;
  /** Bytes the client sent after the request head (may already be upgraded protocol). */
  head: Buffer;
}

/** What serve() learns about a request as it goes, for the record at the end. */
interface Progress {
  tenant: string;
  target: string;
  path: string;
  exchangeId: string;
  clientAddress: string;
  bytesIn: number;
  bytesOut: number;
  /** The request body passed the tenant's limit (the reset that follows means 413). */
  tooLarge: bigint | undefined;
  /** The client went away (set by a listener attached before anything can wait). */
  clientGone: boolean;
  /** What to do when the client goes away from here on. */
  onClientGone: (() => void) | undefined;
  /** The access policy's word, when the tenant has one. */
  access: AccessOutcome | undefined;
  /** The capture recording this exchange, if one does. */
  capture: CaptureTap | undefined;
}

/**
 * The HTTP gateway for plain clients: turns a request to
 * /relay/{tenant}/{target}/... into an exchange, streams the request body to
 * the connector and the response back, with nothing buffered beyond the
 * flow-control windows. Enforces the tenant's settings (disabled, allowed
 * targets, body size, concurrency, timeout) and reports every request once.
 */
export function createGateway(opts: GatewayOptions): Gateway {
  let active = 0;
  const idleSignal = createIdleSignal(() => active === 0);
  const load = createTenantLoad(opts.limits, opts.faults);

  const done = () => {
    active--;
    idleSignal.changed();
  };

  const run = (req: NodeRequest, res: NodeResponse, upgrade: Upgrade | undefined) => {
    active++;
    const started = performance.now();
    const trace = traceFor(single(req.headers.traceparent), single(req.headers["x-request-id"]));
    res.setHeader("x-request-id", trace.requestId);
    const p: Progress = {
      tenant: "",
      target: "",
      path: "",
      exchangeId: "",
      clientAddress: "",
      bytesIn: 0,
      bytesOut: 0,
      tooLarge: undefined,
      clientGone: false,
      onClientGone: undefined,
      access: undefined,
      capture: undefined,
    };
    // Before any await: an HTTP/2 client can reset its stream in the same packet as the request.
    res.once("close", () => {
      p.clientGone = true;
      p.onClientGone?.();
    });
    let code: string | undefined;
    serve(opts, load, req, res, upgrade, trace, p)
      .catch((err) => {
        let error = toFerryError(err);
        if (p.tooLarge !== undefined) error = bodyTooLarge(p.tooLarge);
        code = error.code;
        // identity_unavailable is logged where it happens, once a minute: a node without a key fails every such request.
        if (error.kind === "internal" && error.code !== "identity_unavailable") opts.log.error({ err }, "gateway failure");
        sendError(res, error);
      })
      .finally(() => {
        done();
        try {
          p.capture?.responseHead(res.getHeaders());
          opts.onDone?.({
            tenant: p.tenant,
            target: p.target,
            status: res.headersSent ? res.statusCode : 0,
            code,
            bytesIn: p.bytesIn,
            bytesOut: p.bytesOut,
            durationMs: performance.now() - started,
            exchangeId: p.exchangeId || trace.requestId,
            requestId: trace.requestId,
            method: req.method ?? "",
            path: p.path,
            clientAddress: p.clientAddress || (req.socket.remoteAddress ?? ""),
            ...(p.access ? { access: p.access } : {}),
            ...(p.capture ? { capture: p.capture } : {}),
          });
        } catch (err) {
          opts.log.error({ err }, "recording a request failed");
        }
      });
  };

  return {
    handle: (req, res) => run(req, res, undefined),
    upgrade(req, socket, head) {
      // Nothing reads the socket until the target has switched protocols; a flowing socket without a reader drops bytes.
      socket.pause();
      run(req, responseOnSocket(req, socket), { socket, head });
    },
    routesByHost: (req) => opts.hostRouting?.owns(authorityOf(req)) ?? false,
    get active() {
      return active;
    },
    activeFor: (tenant) => load.activeFor(tenant),
    idle: idleSignal.idle,
  };
}

async function serve(
  opts: GatewayOptions,
  load: TenantLoad,
  req: NodeRequest,
  res: NodeResponse,
  upgrade: Upgrade | undefined,
  trace: Trace,
  p: Progress,
): Promise<void> {
  if (opts.isDraining()) {
    // HTTP/1.1 clients should not reuse this connection; HTTP/2 has no such header (GOAWAY follows).
    if (!("stream" in req)) res.setHeader("connection", "close");
    // A cluster node reaches connectors through the others until it exits: serving beats a 503 the client must retry.
    if (!opts.serveWhileDraining) throw new FerryError("unavailable", "draining", "the relay is shutting down; retry", { retryAfterSeconds: 1 });
  }
  const authority = requestAuthority(req);
  const hostRouted = authority !== undefined && opts.hostRouting?.owns(authority) === true;
  const where = hostRouted ? opts.hostRouting!.route(authority, req.url ?? "/") : parseRelayPath(req.url ?? "/");
  p.tenant = where.tenant;
  p.target = where.target;
  p.path = where.path;
  const tenant = opts.catalog.requireTenant(where.tenant);
  const refusal = tenantRefusal(tenant, where, req.headers, hostRouted);
  if (refusal) {
    // The others are the tenant's own settings; a page calling another tenant is the client's fault, and counted.
    if (refusal.code === "cross_tenant_request") opts.faults.fault("client", "cross_tenant_request");
    throw refusal;
  }
  const maxBody = tenant.maxRequestBodyBytes;
  const timeoutMs = msFromDuration(tenant.requestTimeout) ?? opts.requestTimeoutMs;
  // The relay's own knowledge of the name the client used: the host-routed name (one spelling of it, for caches and
  // apps), or --public-host.
  const vouched = hostRouted ? canonicalAuthority(authority) : opts.publicHost;
  const head = requestHead(opts, req, where, trace, timeoutMs, upgrade !== undefined, vouched);
  p.clientAddress = head.clientAddress;
  // Refused requests too: why a client gets 401 is what an operator often captures for.
  p.capture = opts.captures?.tap(where.tenant, where.target, req.rawHeaders, where.query);
  if (opts.login && where.path.startsWith(LOGIN_PATH_PREFIX)) {
    const secure = tlsAsSeen(head);
    // The name the browser used, port and all (--public-host has none): the provider accepts only the redirect URIs
    // registered with it, so a made-up Host can only fail the sign-in.
    const origin = `${secure ? "https" : "http"}://${forwardedHost(req, opts.trustedProxies) ?? authority ?? ""}`;
    const served = opts.login.serve(req, res, { where, clientAddress: head.clientAddress, origin, secure });
    if (served) return await served;
  }
  // Before the tenant's exchanges are taken: a refused client holds none, and nothing of it reaches a connector.
  const replayBy = opts.replayOf?.(req);
  if (replayBy !== undefined || opts.access?.applies(tenant.name)) {
    const passed =
      replayBy === undefined
        ? passAccessPolicy(opts.access!, req, res, where, head.clientAddress, (outcome) => (p.access = outcome), () => tlsAsSeen(head))
        : replayGrant(replayBy, p);
    const grant = passed instanceof Promise ? await passed : passed;
    const consumed = grant.consumedHeaders;
    if (consumed.length > 0) head.headers = head.headers.filter((h) => !consumed.includes(h.name));
    // Lost when the target sets cookies itself (its Set-Cookie wins): the next request renews it then.
    const renewed = grant.renewedSession;
    if (renewed) {
      const secure = tlsAsSeen(head);
      res.setHeader("set-cookie", setCookie(sessionCookieName(where.prefix, secure), renewed.cookie, sessionCookieScope(where.prefix, secure), renewed.maxAgeSeconds));
    }
    // The node's word that the policy let this request through, for the connector (requireIdentity) and the target
    // to check against /.well-known/ferry/jwks.json. Throws identity_unavailable (500) when it cannot be given.
    if (opts.identity) head.headers.push(header(IDENTITY_HEADER, opts.identity.issue(grant, { tenant: where.tenant, target: where.target, clientAddress: head.clientAddress })));
  }
  // Held from here to the end of the response: the tenant's limit and this client's share of it.
  const admission = load.admit(tenant.name, tenant.maxConcurrentExchanges, head.clientAddress);
  try {
    await exchangeWith(opts, req, res, upgrade, p, { head, where, maxBody, timeoutMs, budget: admission.budget });
  } finally {
    admission.release();
  }
}

/** An administrator's replay passes as the admin it was, with nothing to consume; the target still gets an identity. */
function replayGrant(tokenId: string, p: Progress): AccessGranted {
  p.access = { granted: true, method: "replay", subject: tokenId };
  return { allowed: true, method: "replay", subject: tokenId, consumedHeaders: [] };
}

/** What serve() decided about an admitted request. */
interface Plan {
  head: RequestHead;
  where: RelayPath;
  maxBody: bigint;
  timeoutMs: number;
  /** The tenant's shared buffer budget on this node. */
  budget: ByteBudget;
}

/** Runs the exchange of an admitted request: its head and body to the connector, the answer framed back to the client. */
async function exchangeWith(opts: GatewayOptions, req: NodeRequest, res: NodeResponse, upgrade: Upgrade | undefined, p: Progress, plan: Plan): Promise<void> {
  const { head, where, timeoutMs } = plan;
  const fault = (reason: string) => opts.faults.fault("connector", reason);
  const id = newExchangeId();
  let exchange: Exchange | undefined;
  /**
   * Frames that came before open() settled (the head went with the open, and the answer's first frames can be read
   * with the accept). Only until the promise's continuation runs: at most what one read of the path held.
   */
  let beforeOpen: Frame[] | undefined = [];
  const receive = (frame: Frame) => {
    // Runs on the tunnel's (or NATS's) callback with a peer's frame: whatever happens stays in this exchange.
    try {
      exchange?.receive(frame);
    } catch (err) {
      opts.log.error({ err }, "an exchange failed on a frame");
      exchange?.reset(ResetCode.INTERNAL, "the relay failed on a frame");
    }
  };
  const route = await opts.bus.open(where.tenant, where.target, requestHeadFrame(id, head), (frame) => (beforeOpen ? beforeOpen.push(frame) : receive(frame)));
  const ex = new Exchange({
    id,
    send: route.send,
    sendWindow: route.requestWindow,
    receiveWindow: opts.responseWindow,
    maxFrameSize: route.maxFrameSize,
    transportReady: route.ready,
    budget: plan.budget,
    // Our own callbacks, reached by peer input: one that throws ends only this exchange, and is counted.
    onFault: (what) => opts.faults.fault("connector", "exchange_callback_threw", { what }),
  });
  exchange = ex;
  ex.requestHeadSent(head);
  for (const frame of beforeOpen) receive(frame);
  beforeOpen = undefined;
  p.exchangeId = ex.key;

  let finished = false;
  // A client that goes away cancels the exchange, and with it the target's request.
  const cancel = () => {
    if (!finished) ex.reset(ResetCode.CANCELLED, "the client closed the connection");
  };
  if (p.clientGone) {
    cancel();
    throw new FerryError("bad_gateway", "cancelled", "the client closed the connection");
  }
  p.onClientGone = cancel;
  const timer = setTimeout(
    () => ex.reset(ResetCode.DEADLINE_EXCEEDED, `the target did not respond within ${formatDuration(timeoutMs)}`),
    timeoutMs,
  );
  try {
    /** Bytes that came with an upgrade's head: they go first; the rest is read once the target has switched protocols. */
    let early: Promise<void> | undefined;
    if (upgrade) {
      if (upgrade.head.length > 0 && !ex.writeNow(upgrade.head)) {
        early = ex.write(upgrade.head);
        early.catch(() => {}); // awaited only after a 101; a refused upgrade ends the exchange without it
      }
    } else if (!head.endStream) {
      sendBody(req, ex, p, plan.maxBody);
    }
    const remote = (await ex.remoteHead) as ResponseHead;
    clearTimeout(timer);
    const response = frameResponse(remote, { method: head.method, upgrade: upgrade !== undefined });
    // Path routing shares one origin between tenants: the target's cookies and referrer policy are kept to its own prefix.
    if (where.prefix) response.headers = isolatePathRouted(response.headers, where.prefix);
    // Host routing: each app its own host, but all of them one site; a Domain cookie would reach the others.
    else response.headers = hostOnlyCookies(response.headers);
    // A shared cache may keep what it stores with its Set-Cookie and hand one person's session to the next.
    if (res.hasHeader("set-cookie") && sharedCacheable(response.headers)) res.removeHeader("set-cookie");
    if (upgrade && response.status === 101) {
      await early;
      await switchProtocols(res, upgrade.socket, ex, response, p);
    } else {
      // Not upgraded: this direction has nothing more to send.
      if (upgrade) ex.end();
      await sendResponse(res, ex, response, remote.endStream, p, fault);
    }
    finished = true;
  } catch (err) {
    // The connector's answer broke HTTP: counted, and the connector told to stop; the client gets 502 or a broken response.
    if (err instanceof BadResponse) {
      fault(err.reason);
      ex.reset(ResetCode.PROTOCOL_ERROR, err.message);
    }
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

function requestHead(
  opts: GatewayOptions,
  req: NodeRequest,
  where: RelayPath,
  trace: Trace,
  timeoutMs: number,
  upgrade: boolean,
  host: string | undefined,
): RequestHead {
  const incomingHost = single(req.headers["x-forwarded-host"])?.split(",")[0]!.trim();
  const forwarded = forwardingHeaders(
    {
      remoteAddress: req.socket.remoteAddress ?? "",
      encrypted: "encrypted" in req.socket && req.socket.encrypted === true,
      host,
      incoming: {
        forwardedFor: single(req.headers["x-forwarded-for"]),
        proto: single(req.headers["x-forwarded-proto"]),
        // Even a trusted proxy's name goes on as a Host only if it is one.
        host: incomingHost && isAuthority(incomingHost) ? incomingHost : undefined,
        via: single(req.headers.via),
      },
      prefix: where.prefix,
    },
    opts.trustedProxies,
  );
  const headers = withoutRelayCookies(mergeCookies(endToEndHeaders(req.rawHeaders, { drop: CLIENT_DROPPED, upgrade })));
  headers.push(...forwarded.headers, header("traceparent", trace.traceparent), header("x-request-id", trace.requestId));
  return {
    $typeName: "ferry.tunnel.v1.RequestHead",
    target: where.target,
    method: req.method ?? "GET",
    path: where.path,
    query: where.query,
    headers,
    clientAddress: forwarded.clientAddress,
    timeout: durationFromMs(timeoutMs),
    upgrade,
    // An upgrade's client side stays open: after a 101 it carries the new protocol.
    endStream: !upgrade && !hasBody(req),
    responseWindow: opts.responseWindow,
    // The Host a `hostHeader: original` target gets: the same name as X-Forwarded-Host, or none (its own).
    authority: forwarded.host ?? "",
  };
}

/** Whether a request body follows its head. */
function hasBody(req: NodeRequest): boolean {
  if ("stream" in req) return !(req as Http2ServerRequest).stream.endAfterHeaders;
  const length = req.headers["content-length"];
  if (req.headers["transfer-encoding"] !== undefined) return true;
  return length !== undefined && length !== "0";
}

/** HTTP/2 clients may split Cookie into several fields; HTTP/1.1 targets want one (RFC 9113 §8.2.3). */
function mergeCookies(headers: Header[]): Header[] {
  const cookies = headers.filter((h) => h.name === "cookie");
  if (cookies.length < 2) return headers;
  const rest = headers.filter((h) => h.name !== "cookie");
  rest.push(header("cookie", cookies.map((c) => c.value).join("; ")));
  return rest;
}

/** Whether the client came over TLS, as the X-Forwarded-Proto the relay sends on says (a --trust-proxy peer's word, or the socket's). */
function tlsAsSeen(head: RequestHead): boolean {
  return head.headers.find((h) => h.name === "x-forwarded-proto")?.value === "https";
}

/** X-Forwarded-Host from a --trust-proxy peer, when it is a host name; else undefined. */
function forwardedHost(req: NodeRequest, trusted: BlockList | undefined): string | undefined {
  if (!clientAddressOf(req.socket.remoteAddress ?? "", undefined, trusted).peerTrusted) return undefined;
  const host = single(req.headers["x-forwarded-host"])?.split(",")[0]!.trim();
  return host && isAuthority(host) ? host : undefined;
}

/**
 * The target lets shared caches store its answer (Cache-Control public or s-maxage, or the CDN's own
 * CDN-Cache-Control or Surrogate-Control): no renewed session goes with it.
 */
function sharedCacheable(headers: readonly Header[]): boolean {
  return headers.some(
    (h) =>
      (h.name === "cache-control" && /(^|[\s,])(public|s-maxage)\b/i.test(h.value)) ||
      ((h.name === "cdn-cache-control" || h.name === "surrogate-control") && !/(^|[\s,])(no-store|private)\b/i.test(h.value)),
  );
}

/** The relay's login cookies are its own: the target never sees them (login-cookies.ts). */
function withoutRelayCookies(headers: Header[]): Header[] {
  const at = headers.findIndex((h) => h.name === "cookie" && h.value.includes("ferry_"));
  if (at < 0) return headers;
  const kept = withoutLoginCookies(headers[at]!.value);
  if (kept === undefined) headers.splice(at, 1);
  else headers[at] = header("cookie", kept);
  return headers;
}

/**
 * Streams the client's body into the exchange. Chunks go out synchronously
 * while there is credit; otherwise the client is paused until there is.
 */
function sendBody(req: NodeRequest, ex: Exchange, p: Progress, maxBody: bigint): void {
  let complete = false;
  let dropping = false;
  const cancel = () => ex.reset(ResetCode.CANCELLED, "the client aborted the request body");
  const writer = createPausingWriter(ex, req, () => {
    // The exchange is over (maybe after a complete early answer, which must still reach
    // the client): read the rest of the upload and drop it, never cut the connection here.
    dropping = true;
    req.resume();
  });
  const onData = (chunk: Buffer) => {
    if (dropping) return;
    p.bytesIn += chunk.length;
    p.capture?.requestBody(chunk);
    if (maxBody > 0n && BigInt(p.bytesIn) > maxBody) {
      // A body without Content-Length (or a lying one) crosses the limit mid-stream.
      p.tooLarge = maxBody;
      dropping = true;
      ex.reset(ResetCode.CANCELLED, "the request body is larger than the tenant allows");
      return;
    }
    writer.write(chunk);
  };
  // The client's bytes drive these: a throw ends this exchange, never the connection's other streams.
  req.on("data", (chunk: Buffer) => {
    try {
      onData(chunk);
    } catch {
      dropping = true;
      ex.reset(ResetCode.INTERNAL, "the relay failed on the request body");
    }
  });
  req.once("end", () => {
    complete = true;
    // A paused request with nothing left to read still ends: the last chunk may be waiting for credit.
    writer.afterWrite(() => ex.end());
  });
  // A write may be parked waiting for credit (the response may even be finished already), so
  // a client that goes away must cancel the exchange itself. `req.complete`: the whole body
  // arrived (close follows end); only a cut-off body cancels.
  req.once("close", () => {
    if (!complete && !req.complete) cancel();
  });
  req.once("error", cancel);
  // Closed before we listened (HTTP/2 reset together with the request): 'close' will not come again.
  if (req.destroyed && !req.complete) cancel();
}

/**
 * Writes the response head, then the body as it arrives, pausing the exchange
 * while the client is slow. The body is framed here, not by the connector: at
 * most its Content-Length (what a connector sends beyond it never reaches the
 * client, whose next response it could be), and no less; no body at all for
 * HEAD, 204 and 304. Rejects with BadResponse for a body that breaks that.
 */
function sendResponse(
  res: NodeResponse,
  ex: Exchange,
  response: FramedResponse,
  endStream: boolean,
  p: Progress,
  fault: (reason: BadResponseReason | "bad_trailer") => void,
): Promise<void> {
  const headers = toNodeHeaders(response.headers);
  if (endStream || response.bodiless) {
    // A trailers-only gRPC answer (how gRPC servers send errors) stays one HEADERS frame that ends the stream.
    respondHeadOnly(res, response.status, headers);
    return endStream ? Promise.resolve() : discardBody(ex, fault);
  }
  res.writeHead(response.status, headers);
  const length = response.length;
  return new Promise((resolve, reject) => {
    let sent = 0;
    const resume = () => ex.resume();
    res.on("drain", resume);
    const fail = (err: unknown) => {
      res.off("drain", resume);
      reject(err);
    };
    ex.consume(
      guardedSink(
        {
          data: (chunk) => {
            if (length !== undefined && sent + chunk.byteLength > length) {
              // Nothing past the declared length is written: the response is cut and broken (fail).
              if (sent < length) (res as NodeJS.WritableStream).write(chunk.subarray(0, length - sent));
              throw new BadResponse("body_longer_than_content_length", `the body is longer than its Content-Length (${length})`);
            }
            sent += chunk.byteLength;
            p.bytesOut += chunk.byteLength;
            p.capture?.responseBody(chunk);
            return (res as NodeJS.WritableStream).write(chunk);
          },
          end: (trailers) => {
            if (length !== undefined && sent < length) {
              throw new BadResponse("body_shorter_than_content_length", `the body ended ${length - sent} bytes before its Content-Length`);
            }
            res.off("drain", resume);
            const clean = clientTrailers(trailers, () => fault("bad_trailer"));
            if (clean.length > 0) res.addTrailers(toNodeHeaders(clean) as Record<string, string>);
            res.end();
            resolve();
          },
          error: fail,
        },
        (err) => {
          // The sink is dead: stop the connector too (the gateway's catch counts a BadResponse).
          if (!(err instanceof BadResponse)) ex.reset(ResetCode.INTERNAL, "the relay failed to write the response");
          fail(err);
        },
      ),
    );
  });
}

/**
 * Waits out the body of a response that has none for the client (HEAD, 204,
 * 304): the head is complete, so bytes the connector still sends are dropped
 * (and the exchange reset), never written where a client would read them as
 * the start of its next response.
 */
function discardBody(ex: Exchange, fault: (reason: BadResponseReason) => void): Promise<void> {
  return new Promise((resolve) => {
    ex.consume(
      guardedSink(
        {
          data: (chunk) => {
            if (chunk.byteLength === 0) return true;
            fault("body_on_bodiless_response");
            ex.reset(ResetCode.PROTOCOL_ERROR, "a body came with a response that has none");
            return false;
          },
          end: () => resolve(),
          error: () => resolve(),
        },
        // The client's response is complete already: nothing to break.
        () => resolve(),
      ),
    );
  });
}

/**
 * Sends the target's 101 and joins the client's socket to the exchange, until
 * both are closed. The upgraded protocol's bytes are not parsed: WebSocket
 * messages, pings and close frames pass through unchanged.
 */
async function switchProtocols(res: NodeResponse, socket: Duplex, ex: Exchange, head: FramedResponse, p: Progress): Promise<void> {
  const response = res as ServerResponse;
  response.writeHead(101, toNodeHeaders(head.headers));
  await new Promise<void>((resolve) => response.end(resolve));
  response.detachSocket(socket as Socket);
  p.onClientGone = undefined; // the splice below sees the socket close itself
  // An idle WebSocket is not an idle HTTP connection: no timeout; TCP keepalive finds vanished clients.
  if ("setTimeout" in socket) (socket as Socket).setTimeout(0);
  await spliceSocket(ex, socket, {
    dropped: "the client dropped the upgraded connection",
    onRead: (n) => (p.bytesIn += n),
    onWrite: (n) => (p.bytesOut += n),
  });
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(", ") : value;
}
