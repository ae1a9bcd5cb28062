import { FerryError } from "../../core/errors.js";
import { joinHostPort } from "../../core/host-port.js";
import type { Logger } from "../../core/logger.js";
import { parseTrustedProxies } from "../gateway/forwarded.js";
import { createPeerFaults } from "../limits/peer-faults.js";
import { certificateLog } from "./cert-log.js";
import { serveMetrics } from "./metrics-server.js";
import { createRelay, type Relay, type RelayOptions } from "./relay.js";
import { startingRouter } from "./routes.js";
import { type Listeners, listen, type ListenOptions, type RelayServer } from "./server.js";

export interface RunRelayOptions {
  log: Logger;
  /** Everything the relay node is built with; `log`, `faults` and `signal` come from here. */
  relay: Omit<RelayOptions, "log" | "faults" | "signal">;
  /** Where and how the port listens; limits, counters and keepalive come from the relay's settings. */
  listen: Omit<ListenOptions, "keepaliveMs" | "limits" | "faults" | "trustedProxies">;
  /** On stop, how long a cluster node keeps serving after /readyz turned 503 (load balancers move first). */
  drainDelayMs?: number;
  /** Also serve /metrics without a token here. */
  metricsListen?: { host: string; port: number };
  /** Also serve the admin API, the console and /metrics here, with the main port's TLS (--admin-listen). */
  adminListen?: { host: string; port: number };
  /** Aborts start-up (a node waiting for NATS that is told to stop): runRelay then rejects. */
  signal?: AbortSignal;
}

export interface RunningRelay {
  relay: Relay;
  server: RelayServer;
  readonly url: string;
  readonly metricsUrl: string | undefined;
  /** The admin port's URL, with --admin-listen. */
  readonly adminUrl: string | undefined;
  /**
   * The one stop sequence: readiness off and GoAway to connectors, in-flight
   * exchanges finish within `graceMs`, the port closes (connections still open
   * are cut `forceAfterMs` later), then the relay lets go of its data.
   */
  stop(how?: { graceMs?: number; forceAfterMs?: number }): Promise<{ unfinished: number }>;
}

/**
 * Starts a relay node on its port, for the CLI, `ferry demo` and the tests
 * alike. The port listens first and answers "starting" (alive, not ready)
 * while the node opens its data or waits for NATS, so a load balancer sees a
 * cluster node that is coming rather than a dead one.
 */
export async function runRelay(opts: RunRelayOptions): Promise<RunningRelay> {
  const { log } = opts;
  const r = opts.relay;
  // Counted from the first connection on: the server exists before the relay does.
  const faults = createPeerFaults(log);
  const starting = startingRouter(r.nats ? "waiting for NATS" : "opening the data directory");
  // Both ports answer "starting" until the node exists, then its listeners for each.
  let listeners: Listeners = starting;
  let adminListeners: Listeners = starting;
  const forward = (current: () => Listeners): Listeners => ({
    request: (req, res) => current().request(req, res),
    upgrade: (req, socket, head) => current().upgrade(req, socket, head),
  });
  const certLog = certificateLog(log, { hosts: r.publicHost ? [r.publicHost] : [], baseDomain: r.baseDomain });
  /** Set once the node exists: a reloaded certificate reaches ListNodes too. */
  let node: Relay | undefined;
  const listenOn = (to: Listeners, where: { host: string; port: number }, what: string, extra: Partial<ListenOptions> = {}) =>
    listen(to, {
      ...opts.listen,
      ...where,
      keepaliveMs: r.keepaliveMs ?? 15_000,
      limits: r.limits,
      faults,
      trustedProxies: parseTrustedProxies(r.trustedProxies ?? []),
      ...extra,
    }).catch((err: NodeJS.ErrnoException) => {
      throw err.code === "EADDRINUSE" || err.code === "EACCES" || err.code === "EADDRNOTAVAIL"
        ? new FerryError("failed_precondition", "listen_failed", `cannot listen on ${joinHostPort(where.host, where.port)}${what}: ${err.code}`)
        : err.code === "ENOENT" || err.code === "ERR_TLS_FILES" || err.code?.startsWith("ERR_OSSL")
          ? new FerryError("invalid_argument", "bad_tls_files", `cannot use --tls-cert/--tls-key${opts.listen.connectorCa ? "/--connector-ca" : ""}: ${err.message}`)
          : err;
    });
  const server = await listenOn(forward(() => listeners), opts.listen, "", {
    // The certificate log lines, and whoever else wants to hear of a reload (tests).
    onCertificate(chain, reloaded) {
      certLog.onCertificate(chain, reloaded);
      node?.setCertificate(certLog.facts);
      opts.listen.onCertificate?.(chain, reloaded);
    },
    onCertificateError(err) {
      certLog.onCertificateError(err);
      opts.listen.onCertificateError?.(err);
    },
  });
  // The same certificate files: the main port's reloads are the ones logged.
  const adminServer = opts.adminListen
    ? await listenOn(forward(() => adminListeners), opts.adminListen, " for the admin API", { onCertificate: undefined, onCertificateError: undefined }).catch(
        async (err: unknown) => {
          await server.close(100);
          throw err;
        },
      )
    : undefined;
  const closePorts = async (forceAfterMs: number) => {
    await Promise.all([server.close(forceAfterMs), adminServer?.close(forceAfterMs)]);
  };
  if (r.nats) log.info({ url: server.url, nats: r.nats.servers }, "waiting for NATS");
  let relay: Relay;
  try {
    relay = await withFsErrors(r.dataDir, () => createRelay({ ...r, log, faults, signal: opts.signal }));
  } catch (err) {
    await closePorts(100);
    throw err;
  }
  listeners = relay.listeners;
  adminListeners = relay.adminListeners;
  if (adminServer) log.info({ url: adminServer.url, publicAdmin: r.publicAdmin !== false }, "admin listening");
  relay.setAddress(server.url);
  relay.setCertificate(certLog.facts);
  node = relay;
  let metrics: Awaited<ReturnType<typeof serveMetrics>> | undefined;
  try {
    metrics = opts.metricsListen ? await serveMetrics(relay.metrics, opts.metricsListen) : undefined;
  } catch (err) {
    await closePorts(100);
    await relay.close();
    throw err;
  }
  if (metrics) log.info({ url: `${metrics.url}/metrics` }, "metrics listening");
  const drainDelayMs = opts.drainDelayMs ?? 0;

  return {
    relay,
    server,
    url: server.url,
    metricsUrl: metrics?.url,
    adminUrl: adminServer?.url,
    async stop({ graceMs = 30_000, forceAfterMs = 2_000 } = {}) {
      const drained = relay.drain(graceMs); // /readyz answers 503 from here on
      // A cluster node keeps serving (through the other nodes) until load balancers have seen that; closing the
      // port at once would reset connections they already sent our way.
      if (drainDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, drainDelayMs));
      server.stopAccepting();
      // In a cluster, clients are told at once to go elsewhere (Connection: close, HTTP/2 GOAWAY) while what
      // they already sent finishes; a single node keeps its connections until its exchanges are done.
      const closing = relay.clustered ? server.close(graceMs + forceAfterMs) : undefined;
      const { unfinished } = await drained;
      if (unfinished > 0) log.warn({ unfinished }, "grace period over; cutting exchanges still in flight");
      await (closing ?? server.close(forceAfterMs));
      // Management last: operators watch the node go until its port closes.
      await adminServer?.close(forceAfterMs);
      metrics?.server.close();
      await relay.close();
      return { unfinished };
    },
  };
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
