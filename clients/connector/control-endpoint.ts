import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { joinHostPort } from "../../core/host-port.js";
import type { Logger } from "../../core/logger.js";

/** What GET /status shows. */
export interface ConnectorStatusView {
  id: string;
  paused: boolean;
  /** ISO 8601, or null when the connector stays until stopped. */
  leaveTime: string | null;
  /** Tunnels open and taking exchanges. */
  tunnels: number;
  inFlight: number;
  /** requireIdentity is there only when true. */
  targets: Array<{ name: string; allowedPaths: string[]; allowedMethods: string[]; requireIdentity?: boolean }>;
}

export interface ControlActions {
  status(): ConnectorStatusView;
  pause(by: string): void;
  resume(by: string): void;
}

export interface ControlEndpoint {
  /** http://host:port it listens on. */
  url: string;
  close(): Promise<void>;
}

/**
 * The on-prem admin's switch (--control-listen): GET /status, POST /pause,
 * POST /resume. It has no authentication, so it binds to loopback only (the
 * settings refuse anything else) and still refuses peers that are not local,
 * in case the host forwards the port.
 */
export async function startControlEndpoint(address: { host: string; port: number }, actions: ControlActions, log: Logger): Promise<ControlEndpoint> {
  const server = createServer((req, res) => handle(req, res, actions));
  server.on("clientError", (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(address.port, address.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  const url = `http://${joinHostPort(bound.address, bound.port)}`;
  log.info({ url }, "control endpoint listening");
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function handle(req: IncomingMessage, res: ServerResponse, actions: ControlActions): void {
  if (!isLoopback(req.socket.remoteAddress)) return reply(res, 403, { error: { code: "forbidden", message: "the control endpoint answers local clients only" } });
  // A web page in a local browser could POST here (no preflight for a bare POST), or reach it by DNS rebinding.
  if (req.headers.origin !== undefined || !/^(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$/i.test(req.headers.host ?? "")) {
    return reply(res, 403, { error: { code: "forbidden", message: "the control endpoint takes no browser requests; use curl on this host" } });
  }
  const path = (req.url ?? "/").split("?")[0];
  req.resume();
  const route = `${req.method} ${path}`;
  switch (route) {
    case "GET /status":
      return reply(res, 200, actions.status());
    case "POST /pause":
      actions.pause("control endpoint");
      return reply(res, 200, actions.status());
    case "POST /resume":
      actions.resume("control endpoint");
      return reply(res, 200, actions.status());
    default: {
      const known = ["/status", "/pause", "/resume"].includes(path ?? "");
      return reply(res, known ? 405 : 404, {
        error: { code: known ? "method_not_allowed" : "not_found", message: "use GET /status, POST /pause or POST /resume" },
      });
    }
  }
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), "cache-control": "no-store" });
  res.end(text);
}

function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const v4 = address.startsWith("::ffff:") ? address.slice(7) : address;
  return v4.startsWith("127.") || address === "::1";
}
