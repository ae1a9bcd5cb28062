import { FerryError } from "../../core/errors.js";
import { MIN_PROTOCOL_VERSION, PROTOCOL_VERSION } from "../../core/exchange/protocol.js";
import { FERRY_VERSION } from "../../core/version.js";
import { RELAY_PREFIX } from "../gateway/relay-path.js";
import { type NodeRequest, type NodeResponse, responseOnSocket, sendError } from "../http/http-error.js";
import { JWKS_PATH } from "../identity/jwks-endpoint.js";
import { isTunnelSession } from "../tunnel/tunnel-windows.js";
import { CONSOLE_PREFIX } from "./console-files.js";
import type { Listeners } from "./server.js";

type Handler = (req: NodeRequest, res: NodeResponse) => void;
/** An HTTP/1.1 Upgrade request, with the socket Node's HTTP server has let go of. */
type UpgradeHandler = Listeners["upgrade"];

export interface RouteTable {
  tunnel: Handler;
  admin: Handler;
  gateway: Handler;
  gatewayUpgrade: UpgradeHandler;
  metrics: Handler;
  /** GET /.well-known/ferry/jwks.json: the public keys of X-Ferry-Identity. */
  jwks: Handler;
  /** GET /console/...: the web console's files; undefined with --no-console. */
  console: Handler | undefined;
  /** A host-routed name ({target}.{tenant}.<base domain>): all of its paths belong to the target. */
  routesByHost(req: NodeRequest): boolean;
  ready(): boolean;
}

/** What a port serves: clients and connectors (traffic), operators (the admin API, the console, /metrics), or both. */
export interface PortRoles {
  traffic: boolean;
  management: boolean;
}

/**
 * The relay's listeners, for HTTP/1.1 and HTTP/2 alike: each path space goes
 * to its own handler; a host-routed name goes to the gateway whatever its path.
 * A port without a role answers its paths with 404 and says so.
 */
export function createRouter(routes: RouteTable, roles: PortRoles = { traffic: true, management: true }): Listeners {
  return { request: requestRouter(routes, roles), upgrade: upgradeRouter(routes, roles) };
}

/** Says where management is, not its address: the public port must not tell the internet the internal one. */
const notManagement = (what: string) => new FerryError("not_found", "not_served_here", `${what} not served on this port: operators use the relay's admin port (--admin-listen)`);
const notTraffic = () => new FerryError("not_found", "not_served_here", "this port serves the admin API only; clients and connectors use the relay's main port");

function upgradeRouter(routes: RouteTable, roles: PortRoles): UpgradeHandler {
  return (req, socket, head) => {
    if (!roles.traffic) return sendError(responseOnSocket(req, socket), notTraffic());
    if (routes.routesByHost(req) || (req.url ?? "/").startsWith(RELAY_PREFIX)) return routes.gatewayUpgrade(req, socket, head);
    const path = (req.url ?? "/").split("?", 1)[0];
    sendError(responseOnSocket(req, socket), new FerryError("not_found", "not_found", `nothing to upgrade at ${path}; clients use /relay/{tenant}/{target}/{path}`));
  };
}

function requestRouter(routes: RouteTable, roles: PortRoles): Handler {
  const management = (handler: Handler | undefined, what: string): Handler => (roles.management && handler ? handler : (_req, res) => sendError(res, notManagement(what)));
  const traffic = (handler: Handler): Handler => (roles.traffic ? handler : (_req, res) => sendError(res, notTraffic()));
  const gateway = traffic(routes.gateway);
  const tunnel = traffic(routes.tunnel);
  const jwks = traffic(routes.jwks);
  const admin = management(routes.admin, "the admin API is");
  const metrics = management(routes.metrics, "/metrics is");
  const consoleFiles =
    roles.management && !routes.console
      ? (_req: NodeRequest, res: NodeResponse) => sendError(res, new FerryError("not_found", "console_off", "the web console is off (--no-console)"))
      : management(routes.console, "the web console is");
  return (req, res) => {
    const url = req.url ?? "/";
    // A connector's session has the tunnel's wide windows: a client request on it would get them too.
    if ("stream" in req && req.stream.session && isTunnelSession(req.stream.session) && !url.startsWith("/ferry.tunnel.v1.TunnelService/")) {
      return sendError(res, new FerryError("permission_denied", "tunnel_connection", "this connection carries a connector's tunnel; send requests on another one"));
    }
    if (url.startsWith(RELAY_PREFIX) || (roles.traffic && routes.routesByHost(req))) return gateway(req, res);
    if (url.startsWith("/ferry.tunnel.v1.TunnelService/")) return tunnel(req, res);
    if (url.startsWith("/ferry.admin.v1.AdminService/")) return admin(req, res);
    const path = url.split("?", 1)[0]!;
    if (path === "/console" || path.startsWith(CONSOLE_PREFIX)) return consoleFiles(req, res);
    // Version and protocol tell `ferry doctor` (and operators) whether a connector can talk to this relay.
    if (path === "/healthz") return json(res, 200, { status: "ok", version: FERRY_VERSION, protocols: [MIN_PROTOCOL_VERSION, PROTOCOL_VERSION] });
    if (path === "/metrics") return metrics(req, res);
    // On the relay's own names only: every path of a host-routed name is its target's.
    if (path === JWKS_PATH) return jwks(req, res);
    if (path === "/readyz") return routes.ready() ? json(res, 200, { status: "ready" }) : json(res, 503, { status: "not ready" });
    sendError(res, new FerryError("not_found", "not_found", `nothing at ${path}; clients use /relay/{tenant}/{target}/{path}`));
  };
}

/** What the port answers before the node can serve (waiting for NATS): alive, not ready, come back later. */
export function startingRouter(reason: string): Listeners {
  const starting = () => new FerryError("unavailable", "starting", `the relay is starting: ${reason}`, { retryAfterSeconds: 1 });
  return {
    request(req, res) {
      const path = (req.url ?? "/").split("?", 1)[0];
      if (path === "/healthz") return json(res, 200, { status: "ok" });
      if (path === "/readyz") return json(res, 503, { status: "not ready", reason });
      sendError(res, starting());
    },
    upgrade: (req, socket) => sendError(responseOnSocket(req, socket), starting()),
  };
}

function json(res: NodeResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), "cache-control": "no-store" });
  res.end(text);
}
