import { connectNodeAdapter } from "@connectrpc/connect-node";
import { AdminService } from "../../gen/ferry/admin/v1/admin_service_pb.js";
import { shortId } from "../../clients/sdk/ids.js";
import type { Logger } from "../../clients/sdk/logger.js";
import { DEFAULT_WINDOW } from "../../clients/sdk/protocol.js";
import { authInterceptor } from "../admin/admin-auth.js";
import { errorInterceptor } from "../admin/admin-errors.js";
import { createAdminService } from "../admin/admin-service.js";
import { type AuditLog, createAuditLog } from "../audit/audit-log.js";
import { createLocalBus } from "../bus/local-bus.js";
import { parseTrustedProxies } from "../gateway/forwarded.js";
import { createGateway } from "../gateway/gateway.js";
import type { NodeRequest, NodeResponse } from "../gateway/http-error.js";
import { Catalog } from "../state/catalog.js";
import { openFileStore } from "../state/file-store.js";
import type { KvStore } from "../state/kv-store.js";
import { createTunnelEndpoint } from "../tunnel/tunnel-endpoint.js";
import { TunnelRegistry } from "../tunnel/tunnel-registry.js";
import { createRouter } from "./routes.js";

export interface RelayOptions {
  /** Where state, audit log and lock live. */
  dataDir: string;
  log: Logger;
  /** Bootstrap admin token (FERRY_ADMIN_TOKEN); minted on first start when absent. */
  adminToken?: string;
  /** Time a target has to start responding (default 100s). */
  requestTimeoutMs?: number;
  /** Tunnel keepalive interval (default 15s). */
  keepaliveMs?: number;
  /** Addresses or CIDR ranges whose X-Forwarded-* headers are believed. */
  trustedProxies?: string[];
  /** Per-exchange receive window for response bodies. */
  responseWindow?: number;
  nodeId?: string;
}

export interface Relay {
  /** The request listener for HTTP/1.1 and HTTP/2; the caller owns the sockets. */
  handle(req: NodeRequest, res: NodeResponse): void;
  readonly nodeId: string;
  readonly keepaliveMs: number;
  /** The admin token minted at first start, to show once; undefined otherwise. */
  readonly mintedAdminToken: string | undefined;
  readonly catalog: Catalog;
  readonly registry: TunnelRegistry;
  readonly draining: boolean;
  /**
   * Stops taking new work, sends GoAway to every connector and waits (at most
   * `graceMs`) for exchanges in flight, then closes the tunnels.
   */
  drain(graceMs: number): Promise<{ unfinished: number }>;
  /** Releases the data directory. Call after drain and after the sockets are closed. */
  close(): Promise<void>;
}

/** Builds a relay node without listening: the CLI (or a test) owns the server. */
export async function createRelay(options: RelayOptions): Promise<Relay> {
  const log = options.log;
  const nodeId = options.nodeId ?? shortId(6);
  const keepaliveMs = options.keepaliveMs ?? 15_000;
  const store: KvStore = await openFileStore(options.dataDir);
  const audit: AuditLog = createAuditLog(options.dataDir, log);
  const catalog = new Catalog(store);
  const mintedAdminToken = await catalog.bootstrapAdmin(options.adminToken);
  const registry = new TunnelRegistry();
  let draining = false;

  // Live enforcement: a revoked key or deleted tenant loses its tunnels at once.
  const unwatch = catalog.watch((event) => {
    for (const tunnel of registry.tunnels(event.tenant || undefined)) {
      if (event.type === "tenant-deleted") tunnel.close("tenant deleted", { status: "unauthenticated" });
      else if (tunnel.info.keyId === event.keyId) tunnel.close("connector key was revoked", { status: "unauthenticated" });
    }
    if (event.type === "tenant-deleted") registry.forgetTenant(event.tenant);
  });

  const gateway = createGateway({
    catalog,
    bus: createLocalBus(registry),
    log,
    requestTimeoutMs: options.requestTimeoutMs ?? 100_000,
    responseWindow: options.responseWindow ?? DEFAULT_WINDOW,
    trustedProxies: parseTrustedProxies(options.trustedProxies ?? []),
    isDraining: () => draining,
  });

  // No compression on the tunnel: payloads are opaque or already compressed, and gzip costs ~4x CPU.
  const tunnelHandler = createTunnelEndpoint({ catalog, registry, audit, log, nodeId, keepaliveMs, isDraining: () => draining });

  const adminHandler = connectNodeAdapter({
    routes: (router) => router.service(AdminService, createAdminService({ catalog, registry, audit })),
    interceptors: [errorInterceptor(log), authInterceptor(catalog, audit)],
    readMaxBytes: 1024 * 1024,
  });

  const handle = createRouter({
    tunnel: tunnelHandler,
    admin: adminHandler,
    gateway: gateway.handle,
    ready: () => !draining,
  });

  return {
    handle,
    nodeId,
    keepaliveMs,
    mintedAdminToken,
    catalog,
    registry,
    get draining() {
      return draining;
    },
    async drain(graceMs) {
      draining = true;
      const tunnels = registry.tunnels();
      // Each tunnel ends as soon as its own exchanges are done, so its connector can move on.
      const ended = tunnels.map(async (t) => {
        t.goAway("relay is shutting down");
        await t.idle();
        t.close("relay shut down", { graceful: true });
      });
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
      await Promise.race([Promise.all([gateway.idle(), ...ended]), deadline]);
      clearTimeout(timer);
      const unfinished = gateway.active + tunnels.reduce((n, t) => n + t.inFlight, 0);
      for (const t of registry.tunnels()) t.close("relay shut down", { graceful: true });
      return { unfinished };
    },
    async close() {
      unwatch();
      for (const t of registry.tunnels()) t.close("relay closed");
      await audit.close();
      await store.close();
    },
  };
}
