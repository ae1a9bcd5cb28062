import { FerryError } from "../../clients/sdk/errors.js";
import { RELAY_PREFIX } from "../gateway/relay-path.js";
import { type NodeRequest, type NodeResponse, sendError } from "../gateway/http-error.js";

type Handler = (req: NodeRequest, res: NodeResponse) => void;

export interface RouteTable {
  tunnel: Handler;
  admin: Handler;
  gateway: Handler;
  metrics: Handler;
  ready(): boolean;
}

/**
 * The relay's one request listener, for HTTP/1.1 and HTTP/2 alike: each path
 * space goes to its own handler.
 */
export function createRouter(routes: RouteTable): Handler {
  return (req, res) => {
    const url = req.url ?? "/";
    if (url.startsWith(RELAY_PREFIX)) return routes.gateway(req, res);
    if (url.startsWith("/ferry.tunnel.v1.TunnelService/")) return routes.tunnel(req, res);
    if (url.startsWith("/ferry.admin.v1.AdminService/")) return routes.admin(req, res);
    const path = url.split("?", 1)[0];
    if (path === "/healthz") return json(res, 200, { status: "ok" });
    if (path === "/metrics") return routes.metrics(req, res);
    if (path === "/readyz") return routes.ready() ? json(res, 200, { status: "ready" }) : json(res, 503, { status: "not ready" });
    sendError(res, new FerryError("not_found", "not_found", `nothing at ${path}; clients use /relay/{tenant}/{target}/{path}`));
  };
}

/** What the port answers before the node can serve (waiting for NATS): alive, not ready, come back later. */
export function startingRouter(reason: string): Handler {
  return (req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0];
    if (path === "/healthz") return json(res, 200, { status: "ok" });
    if (path === "/readyz") return json(res, 503, { status: "not ready", reason });
    sendError(res, new FerryError("unavailable", "starting", `the relay is starting: ${reason}`, { retryAfterSeconds: 1 }));
  };
}

function json(res: NodeResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), "cache-control": "no-store" });
  res.end(text);
}
