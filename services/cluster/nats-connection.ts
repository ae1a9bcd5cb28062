import { connect, type ConnectionOptions, ErrorCode, type NatsConnection, type NatsError } from "nats";
import { FerryError } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import type { NatsOptions } from "./nats-options.js";

export interface ClusterConnection {
  nc: NatsConnection;
  /** Whether the client is connected right now (false between a disconnect and the reconnect). */
  readonly connected: boolean;
  /** Called on every disconnect: messages in flight may be lost, so cross-node exchanges must fail. */
  onDisconnect(listener: () => void): void;
  /** Called after every reconnect: watchers resynchronise. */
  onReconnect(listener: () => void): void;
  close(): Promise<void>;
}

/**
 * Connects to NATS and stays connected: unlimited reconnects, pings every two
 * seconds (a dead server is noticed in ~6 s, not the client's default four
 * minutes), and a first connect that waits for NATS to come up, so a relay may
 * start before NATS does (it reports not-ready meanwhile).
 */
export async function connectCluster(options: NatsOptions, nodeId: string, log: Logger, signal: AbortSignal): Promise<ClusterConnection> {
  const opts: ConnectionOptions = {
    servers: options.servers,
    name: `ferry-relay-${nodeId}`,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    reconnectJitter: 250,
    pingInterval: 2_000,
    maxPingOut: 3,
    waitOnFirstConnect: true,
    timeout: 5_000,
    ...(options.user !== undefined ? { user: options.user, pass: options.password } : {}),
    ...(options.token !== undefined ? { token: options.token } : {}),
    ...(options.tls ? { tls: { caFile: options.tls.caFile, certFile: options.tls.certFile, keyFile: options.tls.keyFile } } : {}),
  };
  // waitOnFirstConnect retries forever; a relay stopped meanwhile must not hang on it.
  const pending = connect(opts);
  const aborted = new Promise<never>((_, reject) => {
    const onAbort = () => {
      void pending.then((nc) => nc.close()).catch(() => {});
      reject(new Error("stopped before NATS was reachable"));
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  });
  const nc = await Promise.race([pending, aborted]).catch((err: unknown) => {
    const code = (err as NatsError).code;
    // Wrong credentials do not get better by waiting: say so and stop.
    if (code === ErrorCode.AuthorizationViolation || code === ErrorCode.AuthenticationExpired || code === ErrorCode.AuthenticationTimeout) {
      throw new FerryError(
        "failed_precondition",
        "nats_auth",
        `NATS refused this node's credentials (${(err as Error).message}): check --nats-user/--nats-password or --nats-token`,
      );
    }
    throw err;
  });
  let connected = true;
  const disconnects: Array<() => void> = [];
  const reconnects: Array<() => void> = [];
  log.info({ server: nc.getServer() }, "connected to NATS");
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect") {
        connected = false;
        log.warn({ server: String(s.data) }, "lost NATS; reconnecting");
        for (const l of disconnects) l();
      } else if (s.type === "reconnect") {
        connected = true;
        log.info({ server: String(s.data) }, "reconnected to NATS");
        for (const l of reconnects) l();
      } else if (s.type === "error") {
        log.warn({ err: String(s.data) }, "NATS error");
      }
    }
  })();
  return {
    nc,
    get connected() {
      return connected && !nc.isClosed();
    },
    onDisconnect: (l) => void disconnects.push(l),
    onReconnect: (l) => void reconnects.push(l),
    async close() {
      if (nc.isClosed()) return;
      // drain() lets queued publishes go out; close() would drop them. Cut off from NATS, drain would wait forever.
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, 3_000)));
      await Promise.race([nc.drain().catch(() => {}), late]);
      clearTimeout(timer);
      if (!nc.isClosed()) await nc.close();
    },
  };
}
