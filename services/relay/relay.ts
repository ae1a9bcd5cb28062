import { timestampMs } from "@bufbuild/protobuf/wkt";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { AdminService } from "../../gen/ferry/admin/v1/admin_service_pb.js";
import { shortId } from "../../core/exchange/ids.js";
import type { Logger } from "../../core/logger.js";
import { DEFAULT_WINDOW } from "../../core/exchange/protocol.js";
import { FERRY_VERSION } from "../../core/version.js";
import { adminContextValues, authInterceptor } from "../admin/admin-auth.js";
import { createSourceBackoff } from "../auth/source-backoff.js";
import { errorInterceptor } from "../admin/admin-errors.js";
import { createAdminService } from "../admin/admin-service.js";
import { type AuditLog, createAuditLog } from "../audit/audit-log.js";
import { createRefusalLimiter } from "../audit/refusal-limiter.js";
import { createLocalBus } from "../bus/local-bus.js";
import { parseTrustedProxies } from "../gateway/forwarded.js";
import { createGateway, type Gateway } from "../gateway/gateway.js";
import { createHostRouting } from "../gateway/host-route.js";
import { Catalog } from "../state/catalog.js";
import { lockDataDir, openFileStore } from "../state/file-store.js";
import type { KvStore } from "../state/kv-store.js";
import { createTunnelEndpoint } from "../tunnel/tunnel-endpoint.js";
import { expiredCredential } from "../tunnel/credential-expiry.js";
import { serialDenied } from "../tunnel/connector-cert.js";
import { TunnelRegistry } from "../tunnel/tunnel-registry.js";
import { createExchangeObserver } from "../observability/exchange-observer.js";
import { createClientAccess } from "./client-access.js";
import { createSecretBox } from "../auth/secret-box.js";
import { createLoginRoutes } from "../login/login-routes.js";
import { createIdentityKeys } from "../identity/identity-keys.js";
import { jwksEndpoint } from "../identity/jwks-endpoint.js";
import { createIdentityIssuer } from "../identity/identity-reuse.js";
import { createMetrics, type Metrics } from "../observability/metrics.js";
import { createTrafficStats } from "../observability/traffic-stats.js";
import { createNodeTraffic } from "../traffic/node-traffic.js";
import { createPeerFaults, type PeerFaults } from "../limits/peer-faults.js";
import { type Limits, withLimits } from "../limits/limits.js";
import { metricsEndpoint } from "./metrics-endpoint.js";
import { consoleFiles, defaultConsoleDir } from "./console-files.js";
import { createRouter, type RouteTable } from "./routes.js";
import type { Listeners } from "./server.js";
import { type CertificateFacts, localDirectory, type NodeFacts } from "../admin/directory.js";
import { joinCluster } from "../cluster/cluster-node.js";
import type { NatsOptions } from "../cluster/nats-options.js";
import type { PeerListen } from "../cluster/cluster-bus.js";

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
  /** Days of audit log kept (default 30). */
  auditRetentionDays?: number;
  /** Write a summary of every request to the audit log (default true). */
  auditRequests?: boolean;
  /** Join a cluster over NATS; without it the node is alone and keeps its state in `dataDir`. */
  nats?: NatsOptions;
  /** Cluster only: take exchange frames from the other nodes on this address instead of over NATS. */
  peerListen?: PeerListen;
  /** Aborts start-up (a relay waiting for NATS that is told to stop). */
  signal?: AbortSignal;
  /** Host-based routing: {target}.{tenant}.<baseDomain> reaches that target with its path untouched. */
  baseDomain?: string;
  /** The host name clients and connectors use (--public-host); forwarding headers name it. */
  publicHost?: string;
  /**
   * PEM CA file for connector client certificates. The server (listen) asks
   * for them; with this set, the tunnel endpoint takes a verified one as the
   * connector's credential.
   */
  connectorCa?: string;
  /**
   * The listener asks clients for certificates (--client-certificates): only then can an access rule that
   * accepts nothing but mtls ever match, so a policy with one is refused otherwise.
   */
  clientCertificates?: boolean;
  /** Resource limits; unset ones take their defaults (limits.ts). */
  limits?: Partial<Limits>;
  /** The operator's secret keys (--secret-key-file), the same on every node: needed for access rules with "login". */
  secretKeys?: Buffer[];
  /** Fault and limit counters, shared with the server when it was made first; else the relay makes its own. */
  faults?: PeerFaults;
  /** How long one X-Ferry-Identity signing key is used before the next (default 24 h; short in tests). */
  identityRotateEveryMs?: number;
  /** The main port serves the admin API, the console and /metrics too (default true; false with an admin port). */
  publicAdmin?: boolean;
  /** Serve the web console at /console/ (default true). */
  console?: boolean;
  /** Where the built console's files are (default: dist/console, see console-files.ts). */
  consoleDir?: string;
}

export interface Relay {
  /** The request and upgrade listeners for HTTP/1.1 and HTTP/2; the caller owns the sockets. */
  readonly listeners: Listeners;
  /** The same for an admin port (--admin-listen): the admin API, the console, /metrics, health; no traffic. */
  readonly adminListeners: Listeners;
  readonly nodeId: string;
  readonly keepaliveMs: number;
  /** The admin token minted at first start, to show once; undefined otherwise. */
  readonly mintedAdminToken: string | undefined;
  readonly catalog: Catalog;
  readonly registry: TunnelRegistry;
  readonly metrics: Metrics;
  readonly limits: Limits;
  readonly faults: PeerFaults;
  readonly draining: boolean;
  /** Whether the node is part of a cluster over NATS. */
  readonly clustered: boolean;
  /** Tells the node the address it serves on (for ListNodes). */
  setAddress(url: string): void;
  /** Tells the node the TLS certificate it serves and what is wrong with it (for ListNodes: the console warns). */
  setCertificate(facts: CertificateFacts | undefined): void;
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
  const limits = withLimits(options.limits);
  const faults = options.faults ?? createPeerFaults(log);
  const nodeId = options.nodeId ?? shortId(6);
  const keepaliveMs = options.keepaliveMs ?? 15_000;
  const startTime = new Date();
  let address = "";
  let certificate: CertificateFacts | undefined;
  // In a cluster the data directory keeps only this node's audit log; tenants, keys and tokens live in JetStream.
  const dataLock = options.nats ? await lockDataDir(options.dataDir) : undefined;
  const cluster = options.nats
    ? await joinCluster({
        nats: options.nats,
        nodeId,
        log,
        auditRetentionDays: options.auditRetentionDays ?? 30,
        signal: options.signal ?? new AbortController().signal,
        ...(options.peerListen ? { peerListen: options.peerListen } : {}),
      }).catch((err: unknown) => {
        dataLock?.release();
        throw err;
      })
    : undefined;
  // Whatever fails from here on must not leave a NATS connection (and the process) hanging.
  try {
    return await buildNode();
  } catch (err) {
    await cluster?.close().catch(() => {});
    dataLock?.release();
    throw err;
  }

  async function buildNode(): Promise<Relay> {
    const store: KvStore = cluster ? cluster.store : await openFileStore(options.dataDir);
    // Each node keeps its own files; in a cluster every event also goes to the shared stream the admin API reads.
    const audit: AuditLog = createAuditLog(options.dataDir, log, {
      retentionDays: options.auditRetentionDays,
      mirror: cluster?.audit.publish,
      maxBytes: limits.auditMaxBytes,
      faults,
      // Events about a tenant carry its id; called only once the catalog below exists (nothing is audited before it).
      tenantIdOf: (name) => catalog.getTenant(name)?.tenantId,
    });
    const catalog = new Catalog(store, { faults });
    const trustedProxies = parseTrustedProxies(options.trustedProxies ?? []);
    // One per kind of credential: a connector retrying an old key from an office must not lock its admins out
    // of the admin API, nor an admin's success reset the count of a key-guessing neighbour.
    const tunnelBackoff = createSourceBackoff(limits);
    const adminBackoff = createSourceBackoff(limits);
    const mintedAdminToken = await catalog.bootstrapAdmin(options.adminToken);
    const registry = new TunnelRegistry();
    const stats = createTrafficStats();
    // Replays enter the gateway itself (built below, before any admin call can ask for one).
    const traffic = createNodeTraffic(nodeId, () => gateway.handle);
    let draining = false;

    // Live enforcement: a revoked key, a deleted or disabled tenant, a denied certificate loses its tunnels at once
    // (probe tunnels too: they are held apart from routing, not from revocation).
    const unwatch = catalog.watch((event) => {
      const denied = event.type === "tenant-updated" ? catalog.getTenant(event.tenant)?.deniedCertificateSerials : undefined;
      for (const tunnel of registry.held(event.tenant || undefined)) {
        if (event.type === "tenant-deleted") tunnel.close("tenant deleted", { status: "unauthenticated" });
        else if (event.type === "tenant-updated") {
          if (event.disabled) tunnel.close(`tenant "${event.tenant}" is disabled`, { status: "permission_denied" });
          else if (serialDenied(denied, tunnel.info.certificateSerial)) tunnel.close("connector certificate was denied", { status: "unauthenticated" });
        } else if (tunnel.info.keyId === event.keyId) tunnel.close("connector key was revoked", { status: "unauthenticated" });
      }
      if (event.type === "tenant-deleted") {
        registry.forgetTenant(event.tenant);
        stats.forgetTenant(event.tenant);
        traffic.forgetTenant(event.tenant);
        void metrics.forgetTenant(event.tenant);
      }
    });
    // A rotated key or a client certificate stops working at its expire time: its tunnels close within a second of it.
    const expirySweep = setInterval(() => {
      const now = Date.now();
      for (const tunnel of registry.held()) {
        const expire = tunnel.info.keyId ? catalog.getKey(tunnel.info.keyId)?.expireTime : undefined;
        const why = expiredCredential(tunnel.info, expire ? timestampMs(expire) : undefined, now);
        if (why) tunnel.close(why, { status: "unauthenticated" });
      }
    }, 1000);
    expirySweep.unref();

    let gatewayRef: Gateway | undefined;
    const nodeFacts = (): NodeFacts => ({ nodeId, version: FERRY_VERSION, address, startTime, inFlight: gatewayRef?.active ?? 0, draining, certificate });
    const localBus = createLocalBus(registry);
    const { bus, directory } = cluster
      ? await cluster.start({ registry, local: localBus, node: nodeFacts, isDraining: () => draining, faults, traffic })
      : { bus: localBus, directory: localDirectory(registry, nodeFacts) };
    const secrets = options.secretKeys?.length ? createSecretBox(options.secretKeys) : undefined;
    const clientAccess = createClientAccess(catalog, limits, log, cluster?.liveNodes, secrets);
    // This node's X-Ferry-Identity key, published in the (shared) store before the node serves.
    const identity = createIdentityKeys({ store, nodeId, log, faults, rotateEveryMs: options.identityRotateEveryMs });
    try {
      await identity.ready;
    } catch (err) {
      clientAccess.close();
      throw err;
    }
    const metrics = createMetrics({ registry, activeFor: (tenant) => gatewayRef?.activeFor(tenant) ?? 0, faults });
    const gateway = createGateway({
      catalog,
      bus,
      log,
      requestTimeoutMs: options.requestTimeoutMs ?? 100_000,
      responseWindow: options.responseWindow ?? DEFAULT_WINDOW,
      trustedProxies,
      isDraining: () => draining,
      serveWhileDraining: cluster !== undefined,
      hostRouting: options.baseDomain ? createHostRouting(options.baseDomain) : undefined,
      publicHost: options.publicHost,
      limits,
      faults,
      access: clientAccess.control,
      ...(secrets
        ? {
            login: createLoginRoutes({
              access: clientAccess.control,
              oidc: clientAccess.oidc,
              secrets,
              audit,
              log,
              refusals: createRefusalLimiter(),
              count: (tenant, outcome) => metrics.login(tenant, outcome),
            }),
          }
        : {}),
      identity: createIdentityIssuer(identity),
      captures: traffic.captures,
      replayOf: traffic.replayer.replayOf,
      onDone: createExchangeObserver({
        catalog,
        stats,
        metrics,
        log,
        audit,
        auditRequests: options.auditRequests ?? true,
        serves: (tenant, target) => registry.serves(tenant, target),
        clientRefusals: createRefusalLimiter(),
        nodeId,
        history: traffic.history,
        live: traffic.live,
      }),
    });
    gatewayRef = gateway;

    // No compression on the tunnel: payloads are opaque or already compressed, and gzip costs ~4x CPU.
    const tunnelHandler = createTunnelEndpoint({
      catalog,
      registry,
      audit,
      log,
      nodeId,
      keepaliveMs,
      isDraining: () => draining,
      refusals: createRefusalLimiter(),
      acceptCertificates: options.connectorCa !== undefined,
      limits,
      faults,
      backoff: tunnelBackoff,
      trustedProxies,
    });

    const adminHandler = connectNodeAdapter({
      routes: (router) =>
        router.service(
          AdminService,
          createAdminService({
            catalog,
            directory,
            audit,
            queryAudit: cluster ? cluster.audit.query : (q) => audit.query(q),
            stats,
            limits,
            faults,
            clientCertificates: options.clientCertificates === true,
            ...(secrets ? { secrets } : {}),
            traffic,
          }),
        ),
      // The socket's address, for per-source back-off and for refusals in the audit trail.
      contextValues: adminContextValues(trustedProxies),
      interceptors: [errorInterceptor(log), authInterceptor(catalog, audit, { backoff: adminBackoff, faults })],
      readMaxBytes: 1024 * 1024,
      // No gzip: a watcher's stream of exchange summaries would cost the relay ~20 µs of zlib per exchange, and
      // the admin API's other answers are small.
      acceptCompression: [],
    });

    const routes: RouteTable = {
      tunnel: tunnelHandler,
      admin: adminHandler,
      gateway: gateway.handle,
      gatewayUpgrade: gateway.upgrade,
      routesByHost: gateway.routesByHost,
      metrics: metricsEndpoint(metrics, (token) => {
        const role = catalog.checkAdminToken(token)?.role;
        return role === "admin" || role === "viewer";
      }),
      jwks: jwksEndpoint(identity.jwksJson),
      console: options.console === false ? undefined : consoleFiles(options.consoleDir ?? defaultConsoleDir(), log),
      ready: () => !draining && (cluster?.connected ?? true),
    };
    const listeners = createRouter(routes, { traffic: true, management: options.publicAdmin !== false });
    const adminListeners = createRouter(routes, { traffic: false, management: true });

    return {
      listeners,
      adminListeners,
      nodeId,
      keepaliveMs,
      mintedAdminToken,
      catalog,
      registry,
      metrics,
      limits,
      faults,
      get draining() {
        return draining;
      },
      clustered: cluster !== undefined,
      setAddress(url) {
        address = url;
      },
      setCertificate(facts) {
        certificate = facts;
      },
      async drain(graceMs) {
        draining = true;
        cluster?.drain();
        const tunnels = registry.held();
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
        for (const t of registry.held()) t.close("relay shut down", { graceful: true });
        return { unfinished };
      },
      async close() {
        unwatch();
        traffic.close();
        clearInterval(expirySweep);
        clientAccess.close();
        // Before the store closes: its key stays published 10 minutes for the identities still in flight.
        await identity.close();
        for (const t of registry.held()) t.close("relay closed");
        await audit.close();
        if (cluster) await cluster.close();
        else await store.close();
        dataLock?.release();
      },
    };
  }
}
