import { Command, Option } from "commander";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { Metrics } from "../../services/observability/metrics.js";
import { parseDuration } from "../sdk/duration.js";
import { FerryError } from "../sdk/errors.js";
import { createLogger } from "../sdk/logger.js";
import { parseListen } from "./listen-address.js";
import { collect, onShutdown } from "./run.js";

export function relayCommand(): Command {
  return new Command("relay")
    .description("Run a relay node: gateway for clients, tunnel endpoint for connectors, admin API, on one port.")
    .option("--listen <host:port>", "address to serve on", "127.0.0.1:8080")
    .option("--data <dir>", "state directory (tenants, key hashes, audit log)", "./data")
    .option("--tls-cert <file>", "PEM certificate chain; with --tls-key serves HTTPS (HTTP/2 and HTTP/1.1 by ALPN)")
    .option("--tls-key <file>", "PEM private key for --tls-cert")
    .option("--request-timeout <duration>", "time a target has to start its response", "100s")
    .option("--keepalive <duration>", "tunnel keepalive interval; a silent peer is dropped after 1.5x", "15s")
    .option("--grace <duration>", "on SIGTERM, how long in-flight exchanges may take to finish", "30s")
    .option("--trust-proxy <cidr>", "believe X-Forwarded-* from this address or range (repeatable)", collect, [])
    .option("--node-id <id>", "name of this node in logs and the admin API (default: random)")
    .option("--audit-retention <days>", "days of audit log kept in the data directory", "30")
    .option("--no-audit-requests", "do not write a summary of every request to the audit log")
    .option("--metrics-listen <host:port>", "also serve /metrics without a token on this (internal) address")
    .addOption(new Option("--log-level <level>", "log level").choices(["trace", "debug", "info", "warn", "error"]).default("info"))
    .addHelpText(
      "after",
      "\nEnvironment:\n  FERRY_ADMIN_TOKEN   bootstrap admin token (at least 16 characters); without it the first\n                      start mints one and prints it once\n",
    )
    .action(async (o) => {
      // Loaded here so `ferry connector` and `ferry admin` never pay for the relay's modules (memory).
      const { createRelay } = await import("../../services/relay/relay.js");
      const { listen } = await import("../../services/relay/server.js");
      if (Boolean(o.tlsCert) !== Boolean(o.tlsKey)) {
        throw new FerryError("invalid_argument", "invalid_tls", "--tls-cert and --tls-key go together");
      }
      const log = createLogger({ level: o.logLevel, name: "relay" });
      const { host, port } = parseListen(o.listen);
      const keepaliveMs = parseDuration(o.keepalive);
      const graceMs = parseDuration(o.grace);
      const relay = await withFsErrors(o.data, () => createRelay({
        dataDir: o.data,
        log,
        adminToken: process.env.FERRY_ADMIN_TOKEN || undefined,
        requestTimeoutMs: parseDuration(o.requestTimeout),
        keepaliveMs,
        trustedProxies: o.trustProxy,
        nodeId: o.nodeId,
        auditRetentionDays: positiveInt(o.auditRetention, "--audit-retention"),
        auditRequests: o.auditRequests,
      }));
      const server = await listen(relay.handle, { host, port, tlsCert: o.tlsCert, tlsKey: o.tlsKey, keepaliveMs }).catch(
        async (err: NodeJS.ErrnoException) => {
          await relay.close();
          throw err.code === "EADDRINUSE" || err.code === "EACCES" || err.code === "EADDRNOTAVAIL"
            ? new FerryError("failed_precondition", "listen_failed", `cannot listen on ${o.listen}: ${err.code}`)
            : err.code === "ENOENT" || err.code?.startsWith("ERR_OSSL")
              ? new FerryError("invalid_argument", "bad_tls_files", `cannot use --tls-cert/--tls-key: ${err.message}`)
              : err;
        },
      );
      relay.setAddress(server.url);
      const metricsServer = o.metricsListen ? await serveMetrics(relay.metrics, parseListen(o.metricsListen)) : undefined;
      if (metricsServer) log.info({ url: `${metricsServer.url}/metrics` }, "metrics listening");
      if (relay.mintedAdminToken) {
        // Straight to the terminal, never through the logger: it must not end up in log storage.
        process.stderr.write(
          `\nFerry admin token (shown once; only its hash is stored in ${o.data}):\n\n  ${relay.mintedAdminToken}\n\n`,
        );
      }
      log.info({ url: server.url, node: relay.nodeId, data: o.data }, "relay listening");
      onShutdown(async (signal) => {
        log.info({ signal, graceMs }, "draining: GoAway sent to connectors, finishing in-flight exchanges");
        server.stopAccepting();
        const { unfinished } = await relay.drain(graceMs);
        if (unfinished > 0) log.warn({ unfinished }, "grace period over; cutting exchanges still in flight");
        await server.close(2_000);
        metricsServer?.server.close();
        await relay.close();
        log.info("relay stopped");
      });
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

function positiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new FerryError("invalid_argument", "invalid_number", `${flag} "${text}" is not a whole number >= 1`);
  return n;
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
