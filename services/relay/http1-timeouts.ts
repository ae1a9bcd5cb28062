import type { Server as Http1Server } from "node:http";
import type { Limits } from "../limits/limits.js";

/** The HTTP/1.1 server settings (createServer options and server properties alike) that bound heads and idle connections. */
export interface Http1Timeouts {
  /** Each request head, from its first byte (or from the connection for the first), must be complete within this. */
  headersTimeout: number;
  /** 0: a body streams for as long as it needs (Node's default, 5 minutes, would cut long uploads). */
  requestTimeout: 0;
  /** A keep-alive connection without a request in progress closes after this (Node adds 1s so clients close first). */
  keepAliveTimeout: number;
  /** How often Node looks for heads past their deadline: a fraction of it, so a late head is cut close to it. */
  connectionsCheckingInterval: number;
}

export function http1Timeouts(limits: Pick<Limits, "headersTimeoutMs" | "idleTimeoutMs">): Http1Timeouts {
  return {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: 0,
    keepAliveTimeout: limits.idleTimeoutMs,
    connectionsCheckingInterval: Math.max(25, Math.min(1_000, Math.floor(limits.headersTimeoutMs / 4))),
  };
}

/**
 * Starts Node's connection checker (which enforces headersTimeout) on an
 * HTTP/1.1 server that never listens: the relay's outer server accepts and
 * hands sockets over with emit("connection"). Node starts the checker, and
 * makes its parsers track their connections at all, only on 'listening'
 * (setupConnectionsTracking in _http_server.js, the one 'listening' listener an
 * http.Server has); nothing else of ours listens for that event on these
 * servers, so emitting it starts exactly that. server.close() stops it again.
 * Call it before the first connection: parsers made earlier are not tracked.
 */
export function startHeadersChecker(server: Http1Server): void {
  server.emit("listening");
}
