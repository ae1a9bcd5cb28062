import { Command, Option } from "commander";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { Metrics } from "../../services/observability/metrics.js";
import type { Listeners } from "../../services/relay/server.js";
import { FerryError } from "../sdk/errors.js";
import { createLogger } from "../sdk/logger.js";
import { argvSecretWarning } from "../sdk/secret-file.js";
import type { RelayFlags } from "./relay-config.js";
import { collect, onShutdown } from "./run.js";

export function relayCommand(): Command {
  // No commander defaults: they would always beat the config file. resolveRelaySettings applies
  // them, and the descriptions state them (a unit test keeps the two in step).
  return new Command("relay")
    .description("Run a relay node: gateway for clients, tunnel endpoint for connectors, admin API, on one port.")
    .option("--config <file>", "YAML or JSON file with the same settings (flags override it)")
    .option("--listen <host:port>", "address to serve on (default 127.0.0.1:8080)")
    .option("--data <dir>", "state directory: tenants, key hashes, audit log (default ./data)")
    .option("--tls-cert <file>", "PEM certificate chain; with --tls-key serves HTTPS (HTTP/2 and HTTP/1.1 by ALPN)")
    .option("--tls-key <file>", "PEM private key for --tls-cert")
    .option("--request-timeout <duration>", "time a target has to start its response (default 100s)")
    .option("--keepalive <duration>", "tunnel keepalive interval; a silent peer is dropped after 1.5x (default 15s)")
    .option("--grace <duration>", "on SIGTERM, how long in-flight exchanges may take to finish (default 30s)")
    .option("--drain-delay <duration>", "on SIGTERM, how long a cluster node keeps its port open after /readyz turns 503, so load balancers move first (default 2s with --nats, else 0)")
    .option("--connector-ca <file>", "PEM CA whose client certificates authenticate connectors (mTLS; SAN/CN names the tenant)")
    .option("--public-host <name>", "host name clients and connectors use; the relay warns when its certificate does not cover it")
    .option("--base-domain <domain>", "route {target}.{tenant}.DOMAIN to that target with the path untouched (needs wildcard DNS and certificate)")
    .option("--trust-proxy <cidr>", "believe X-Forwarded-* from this address or range (repeatable)", collect)
    .option("--node-id <id>", "name of this node in logs and the admin API (default: random)")
    .option("--audit-retention <days>", "days of audit log kept in the data directory (default 30)")
    .option("--no-audit-requests", "do not write a summary of every request to the audit log")
    .option("--metrics-listen <host:port>", "also serve /metrics without a token on this (internal) address")
    .addOption(new Option("--log-level <level>", "log level (default info)").choices(["trace", "debug", "info", "warn", "error"]))
    .option("--nats <urls>", "join a relay cluster through these NATS servers: nats://HOST:PORT or tls://HOST:PORT, comma-separated")
    .option("--nats-user <name>", "NATS user (with --nats-password)")
    .option("--nats-password <secret>", "NATS password (visible in ps: prefer FERRY_NATS_PASSWORD)")
    .option("--nats-token <secret>", "NATS token instead of user and password (visible in ps: prefer FERRY_NATS_TOKEN)")
    .option("--nats-ca <file>", "PEM CA certificate(s) to trust for the NATS servers")
    .option("--nats-cert <file>", "PEM client certificate for mutual TLS with NATS (with --nats-key)")
    .option("--nats-key <file>", "PEM private key for --nats-cert")
    .option("--nats-replicas <n>", "JetStream replicas, 1 to 5 (default 3 with 3 or more NATS servers, else 1)")
    .option("--limit <name=value>", "set one resource limit, e.g. maxConnectionsPerIp=1000 or tenantBufferBytes=128MiB (repeatable; all of them, with defaults: docs/security.md)", collect)
    .addHelpText(
      "after",
      `
Environment:
  FERRY_ADMIN_TOKEN    bootstrap admin token, random (at least 24 characters and ~96 bits,
                       e.g. openssl rand -hex 24); without it the first start mints one
                       and prints it once
  FERRY_NATS_PASSWORD  NATS password, when neither --nats-password nor the file gives one
  FERRY_NATS_TOKEN     NATS token, when neither --nats-token nor the file gives one

Config file (YAML or JSON; unknown keys are rejected):
  listen: 0.0.0.0:8443
  data: /var/lib/ferry
  tlsCert: /etc/ferry/fullchain.pem
  tlsKey: /etc/ferry/key.pem
  requestTimeout: 60s
  baseDomain: relay.example.com   # https://{target}.{tenant}.relay.example.com/
  publicHost: relay.example.com   # checked against the certificate
  nats:
    servers: [nats://10.0.0.11:4222, nats://10.0.0.12:4222, nats://10.0.0.13:4222]
    user: ferry        # password from FERRY_NATS_PASSWORD
    replicas: 3
`,
    )
    .action(async (o: RelayFlags, cmd: Command) => {
      // Loaded here so `ferry connector` and `ferry admin` never pay for the relay's modules (memory).
      const { createRelay } = await import("../../services/relay/relay.js");
      const { listen } = await import("../../services/relay/server.js");
      const { startingRouter } = await import("../../services/relay/routes.js");
      const { resolveRelaySettings } = await import("./relay-config.js");
      // Commander makes --no-audit-requests imply `true` when absent; only a given flag may beat the file.
      const auditRequests = cmd.getOptionValueSource("auditRequests") === "cli" ? o.auditRequests : undefined;
      const settings = resolveRelaySettings({ ...o, auditRequests }, process.env);
      if (o.natsPassword) process.stderr.write(`${argvSecretWarning("--nats-password", "FERRY_NATS_PASSWORD")}\n`);
      if (o.natsToken) process.stderr.write(`${argvSecretWarning("--nats-token", "FERRY_NATS_TOKEN")}\n`);
      const log = createLogger({ level: settings.logLevel, name: "relay" });
      const { host, port } = settings.listen;
      const { keepaliveMs, graceMs, dataDir } = settings;
      // A cluster node listens before NATS is reachable, so load balancers see it alive but not ready.
      let listeners: Listeners = startingRouter(settings.nats ? "waiting for NATS" : "opening the data directory");
      const starting = new AbortController();
      let stop: ((signal: string) => Promise<void>) | undefined;
      onShutdown(async (signal) => {
        if (stop) return stop(signal);
        starting.abort();
        log.info({ signal }, "stopped while starting");
      });
      const forward: Listeners = { request: (req, res) => listeners.request(req, res), upgrade: (req, socket, head) => listeners.upgrade(req, socket, head) };
      const { certificateLog } = await import("../../services/relay/cert-log.js");
      const certLog = certificateLog(log, { hosts: settings.publicHost ? [settings.publicHost] : [], baseDomain: settings.baseDomain });
      // Counted from the first connection on: the server exists before the relay does.
      const { createPeerFaults } = await import("../../services/observability/peer-faults.js");
      const { parseTrustedProxies } = await import("../../services/gateway/forwarded.js");
      const faults = createPeerFaults(log);
      const server = await listen(forward, {
        host,
        port,
        limits: settings.limits,
        faults,
        trustedProxies: parseTrustedProxies(settings.trustedProxies),
        tlsCert: settings.tlsCert,
        tlsKey: settings.tlsKey,
        connectorCa: settings.connectorCa,
        onCertificate: certLog.onCertificate,
        onCertificateError: certLog.onCertificateError,
        keepaliveMs,
      }).catch(
        (err: NodeJS.ErrnoException) => {
          throw err.code === "EADDRINUSE" || err.code === "EACCES" || err.code === "EADDRNOTAVAIL"
            ? new FerryError("failed_precondition", "listen_failed", `cannot listen on ${host.includes(":") ? `[${host}]` : host}:${port}: ${err.code}`)
            : err.code === "ENOENT" || err.code === "ERR_TLS_FILES" || err.code?.startsWith("ERR_OSSL")
              ? new FerryError("invalid_argument", "bad_tls_files", `cannot use --tls-cert/--tls-key${settings.connectorCa ? "/--connector-ca" : ""}: ${err.message}`)
              : err;
        },
      );
      if (settings.nats) log.info({ url: server.url, nats: settings.nats.servers }, "waiting for NATS");
      const relay = await withFsErrors(dataDir, () =>
        createRelay({
          dataDir,
          log,
          adminToken: settings.adminToken,
          requestTimeoutMs: settings.requestTimeoutMs,
          keepaliveMs,
          trustedProxies: settings.trustedProxies,
          nodeId: settings.nodeId,
          auditRetentionDays: settings.auditRetentionDays,
          auditRequests: settings.auditRequests,
          nats: settings.nats,
          signal: starting.signal,
          baseDomain: settings.baseDomain,
          publicHost: settings.publicHost,
          connectorCa: settings.connectorCa,
          limits: settings.limits,
          faults,
        }),
      ).catch(async (err: unknown) => {
        await server.close(100);
        if (starting.signal.aborted) process.exit(0);
        throw err;
      });
      listeners = relay.listeners;
      relay.setAddress(server.url);
      const metricsServer = settings.metricsListen ? await serveMetrics(relay.metrics, settings.metricsListen) : undefined;
      if (metricsServer) log.info({ url: `${metricsServer.url}/metrics` }, "metrics listening");
      if (relay.mintedAdminToken) {
        // Straight to the terminal, never through the logger: it must not end up in log storage.
        process.stderr.write(
          `\nFerry admin token (shown once; only its hash is stored in ${settings.nats ? "the cluster's state" : dataDir}):\n\n  ${relay.mintedAdminToken}\n\n`,
        );
      }
      log.info({ url: server.url, node: relay.nodeId, data: dataDir, cluster: relay.clustered }, "relay listening");
      stop = async (signal) => {
        log.info({ signal, graceMs }, "draining: GoAway sent to connectors, finishing in-flight exchanges");
        const drained = relay.drain(graceMs); // /readyz answers 503 from here on
        // A cluster node keeps serving (through the other nodes) until load balancers have seen that; closing the
        // port at once would reset connections they already sent our way.
        if (settings.drainDelayMs > 0) await new Promise((r) => setTimeout(r, settings.drainDelayMs));
        server.stopAccepting();
        // In a cluster, clients are told at once to go elsewhere (Connection: close, HTTP/2 GOAWAY) while what
        // they already sent finishes; a single node keeps its connections until its exchanges are done.
        const closing = relay.clustered ? server.close(graceMs + 2_000) : undefined;
        const { unfinished } = await drained;
        if (unfinished > 0) log.warn({ unfinished }, "grace period over; cutting exchanges still in flight");
        await (closing ?? server.close(2_000));
        metricsServer?.server.close();
        await relay.close();
        log.info("relay stopped");
      };
    });
}

/** Turns file-system failures on the data directory into one clear line. */
async function withFsErrors<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code && /^E[A-Z]+$/.test(code)) {
      throw new FerryError("failed_precondition", "data_dir", `cannot use data directory ${dir}: ${(err as Error).message}`);
    }
    throw err;
  }
}

/** /metrics alone, without a token, on an address meant for an internal network. */
async function serveMetrics(metrics: Metrics, where: { host: string; port: number }) {
  const { metricsEndpoint } = await import("../../services/relay/metrics-endpoint.js");
  const endpoint = metricsEndpoint(metrics);
  const server = createServer((req, res) => {
    if (req.url?.split("?")[0] === "/metrics") return endpoint(req, res);
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("only /metrics here\n");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(new FerryError("failed_precondition", "listen_failed", `cannot listen on ${where.host}:${where.port} for metrics: ${err.code}`)),
    );
    server.listen(where.port, where.host, resolve);
  });
  const a = server.address() as AddressInfo;
  return { server, url: `http://${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}` };
}
