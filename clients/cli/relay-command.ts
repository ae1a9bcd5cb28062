import { Command, Option } from "commander";
import { createLogger } from "../../core/logger.js";
import { argvSecretWarning } from "../../core/secret-file.js";
import type { RelayFlags } from "../../services/relay/relay-config.js";
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
    .option("--client-certificates", "ask clients for a certificate on the TLS listener, for access rules that accept mtls")
    .option("--public-host <name>", "host name clients and connectors use; the relay warns when its certificate does not cover it")
    .option("--base-domain <domain>", "route {target}.{tenant}.DOMAIN to that target with the path untouched (needs wildcard DNS and certificate)")
    .option("--trust-proxy <cidr>", "believe X-Forwarded-* from this address or range (repeatable)", collect)
    .option("--node-id <id>", "name of this node in logs and the admin API (default: random)")
    .option("--audit-retention <days>", "days of audit log kept in the data directory (default 30)")
    .option("--no-audit-requests", "do not write a summary of every request to the audit log")
    .option("--metrics-listen <host:port>", "also serve /metrics without a token on this (internal) address")
    .option("--admin-listen <host:port>", "also serve the admin API, the web console, /metrics and health on this (internal) address, with the main port's TLS")
    .option("--no-public-admin", "serve the admin API, the console and /metrics only on --admin-listen (needed); the main port keeps tunnels, the gateway and health")
    .option("--no-console", "do not serve the web console at /console/")
    .addOption(new Option("--log-level <level>", "log level (default info)").choices(["trace", "debug", "info", "warn", "error"]))
    .option("--nats <urls>", "join a relay cluster through these NATS servers: nats://HOST:PORT or tls://HOST:PORT, comma-separated")
    .option("--nats-user <name>", "NATS user (with --nats-password)")
    .option("--nats-password <secret>", "NATS password (visible in ps: prefer FERRY_NATS_PASSWORD)")
    .option("--nats-token <secret>", "NATS token instead of user and password (visible in ps: prefer FERRY_NATS_TOKEN)")
    .option("--nats-ca <file>", "PEM CA certificate(s) to trust for the NATS servers")
    .option("--nats-cert <file>", "PEM client certificate for mutual TLS with NATS (with --nats-key)")
    .option("--nats-key <file>", "PEM private key for --nats-cert")
    .option("--nats-replicas <n>", "JetStream replicas, 1 to 5 (default 3 with 3 or more NATS servers, else 1)")
    .option("--peer-listen <host:port>", "cluster: take exchange frames from the other nodes here (an internal address; cleartext HTTP/2) instead of over NATS")
    .option("--peer-advertise <host[:port]>", "the address the other nodes dial for --peer-listen (default: its host and port)")
    .option("--secret-key-file <file>", "the operator's secret keys, one per line (openssl rand -base64 32), the same on every node: they seal login client secrets and sessions; or set FERRY_SECRET_KEY")
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
  FERRY_SECRET_KEY     the secret keys (comma-separated), when --secret-key-file is not given

Config file (YAML or JSON; unknown keys are rejected):
  listen: 0.0.0.0:8443
  data: /var/lib/ferry
  tlsCert: /etc/ferry/fullchain.pem
  tlsKey: /etc/ferry/key.pem
  requestTimeout: 60s
  baseDomain: relay.example.com   # https://{target}.{tenant}.relay.example.com/
  publicHost: relay.example.com   # checked against the certificate
  adminListen: 127.0.0.1:9443     # the admin API, /console/ and /metrics here...
  publicAdmin: false              # ...and not on the main port
  nats:
    servers: [nats://10.0.0.11:4222, nats://10.0.0.12:4222, nats://10.0.0.13:4222]
    user: ferry        # password from FERRY_NATS_PASSWORD
    replicas: 3
  peerListen: 10.0.0.21:7443      # bodies between nodes straight, not through NATS
`,
    )
    .action(async (o: RelayFlags, cmd: Command) => {
      // Loaded here so `ferry connector` and `ferry admin` never pay for the relay's modules (memory).
      const { runRelay } = await import("../../services/relay/run-relay.js");
      const { resolveRelaySettings } = await import("../../services/relay/relay-config.js");
      // Commander makes each --no-X imply `true` when absent; only a given flag may beat the file.
      const given = <K extends "auditRequests" | "publicAdmin" | "console">(key: K) => (cmd.getOptionValueSource(key) === "cli" ? o[key] : undefined);
      const settings = resolveRelaySettings({ ...o, auditRequests: given("auditRequests"), publicAdmin: given("publicAdmin"), console: given("console") }, process.env);
      if (o.natsPassword) process.stderr.write(`${argvSecretWarning("--nats-password", "FERRY_NATS_PASSWORD")}\n`);
      if (o.natsToken) process.stderr.write(`${argvSecretWarning("--nats-token", "FERRY_NATS_TOKEN")}\n`);
      const log = createLogger({ level: settings.logLevel, name: "relay" });
      const { graceMs, dataDir } = settings;
      const starting = new AbortController();
      let stop: ((signal: string) => Promise<void>) | undefined;
      onShutdown(async (signal) => {
        if (stop) return stop(signal);
        starting.abort();
        log.info({ signal }, "stopped while starting");
      });
      const running = await runRelay({
        log,
        signal: starting.signal,
        listen: {
          ...settings.listen,
          tlsCert: settings.tlsCert,
          tlsKey: settings.tlsKey,
          connectorCa: settings.connectorCa,
          clientCertificates: settings.clientCertificates,
        },
        drainDelayMs: settings.drainDelayMs,
        metricsListen: settings.metricsListen,
        adminListen: settings.adminListen,
        relay: {
          dataDir,
          adminToken: settings.adminToken,
          requestTimeoutMs: settings.requestTimeoutMs,
          keepaliveMs: settings.keepaliveMs,
          trustedProxies: settings.trustedProxies,
          nodeId: settings.nodeId,
          auditRetentionDays: settings.auditRetentionDays,
          auditRequests: settings.auditRequests,
          nats: settings.nats,
          peerListen: settings.peerListen,
          baseDomain: settings.baseDomain,
          publicHost: settings.publicHost,
          connectorCa: settings.connectorCa,
          clientCertificates: settings.clientCertificates,
          limits: settings.limits,
          ...(settings.secretKeys ? { secretKeys: settings.secretKeys } : {}),
          publicAdmin: settings.publicAdmin,
          console: settings.console,
        },
      }).catch((err: unknown) => {
        if (starting.signal.aborted) process.exit(0);
        throw err;
      });
      const { relay } = running;
      if (relay.mintedAdminToken) {
        // Straight to the terminal, never through the logger: it must not end up in log storage.
        process.stderr.write(
          `\nFerry admin token (shown once; only its hash is stored in ${settings.nats ? "the cluster's state" : dataDir}):\n\n  ${relay.mintedAdminToken}\n\n`,
        );
      }
      log.info({ url: running.url, node: relay.nodeId, data: dataDir, cluster: relay.clustered }, "relay listening");
      stop = async (signal) => {
        log.info({ signal, graceMs }, "draining: GoAway sent to connectors, finishing in-flight exchanges");
        await running.stop({ graceMs });
        log.info("relay stopped");
      };
    });
}
