import { create } from "@bufbuild/protobuf";
import { hostname } from "node:os";
import { HelloSchema } from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";
import { createBackoff } from "./backoff.js";
import { formatDuration } from "../../core/duration.js";
import type { Logger } from "../../core/logger.js";
import { DEFAULT_WINDOW, PROTOCOL_VERSION } from "../../core/exchange/protocol.js";
import { FERRY_VERSION } from "../../core/version.js";
import { createAccessStatus } from "./access-status.js";
import { type AccessWindow, startAccessWindow } from "./access-window.js";
import type { ConnectorSettings } from "./connector-config.js";
import { type ConnectorStatusView, type ControlEndpoint, startControlEndpoint } from "./control-endpoint.js";
import { createExchangeAudit } from "./exchange-audit.js";
import { describeProxy, proxyFor } from "./proxy.js";
import { relayNetwork } from "./relay-channel.js";
import { describeDiagnosis, diagnoseRelay } from "./relay-diagnosis.js";
import { createTargetForwarder } from "./target-forwarder.js";
import { TunnelConnection, TunnelError } from "./tunnel-connection.js";

export interface Connector {
  /** Tunnels currently open (Welcome received, not yet ended). */
  readonly connectedTunnels: number;
  /** Resolves once at least `n` tunnels are open. */
  waitConnected(n?: number): Promise<void>;
  /** Finishes in-flight exchanges (at most the grace period), closes tunnels, stops. */
  stop(): Promise<void>;
  /** What the local control endpoint shows. */
  status(): ConnectorStatusView;
  /** Refuses new exchanges (the relay is told and routes none here); those in flight go on. */
  pause(by: string): void;
  resume(by: string): void;
  /** Resolves when the --for window ends (never without --for); the owner then stops the connector. */
  readonly windowEnded: Promise<void>;
  /** The control endpoint's URL once it listens (undefined without --control-listen); rejects if it cannot bind. */
  readonly controlUrl: Promise<string | undefined>;
  /** Reopens the audit log (SIGHUP after logrotate). */
  reopenAuditLog(): void;
}

/**
 * The on-prem side: keeps `tunnels` streams open to the relays, each in its
 * own dial loop (a slot) with capped exponential backoff and full jitter.
 * Slot i starts at relay i and moves to the next relay when one fails or
 * drains, so tunnels spread over relay nodes.
 */
export function startConnector(settings: ConnectorSettings, log: Logger): Connector {
  const audit = settings.auditLog ? createExchangeAudit(settings.auditLog, log) : undefined;
  const forwarder = createTargetForwarder(settings.targets, log, audit ? (ex) => audit.forbidden(ex) : undefined);
  const access = createAccessStatus(settings.runForMs === undefined ? undefined : new Date(Date.now() + settings.runForMs));
  access.onChange(() => {
    const status = access.toProto();
    for (const c of live) c.sendStatus(status);
  });
  const live = new Set<TunnelConnection>();
  let stopping = false;
  const stopSignal = new AbortController();
  const connectedWaiters: Array<{ n: number; resolve(): void }> = [];
  const slotCount = Math.max(settings.tunnels, 1);
  const network = relayNetwork(settings);
  // Resolved once up front so a malformed HTTPS_PROXY fails the start, not every dial.
  const proxies = settings.relays.map((r) => proxyFor(r, network.proxy));

  /** Tunnels that take new exchanges: welcomed, and not asked to move. */
  const openCount = () => [...live].filter((c) => c.welcome && !c.relayDraining).length;
  const notify = () => {
    const open = openCount();
    for (const w of connectedWaiters.splice(0)) {
      if (open >= w.n) w.resolve();
      else connectedWaiters.push(w);
    }
  };

  /** The relay each slot is on (or dialing). */
  const slotRelay: number[] = Array.from({ length: slotCount }, (_, i) => i % settings.relays.length);
  /**
   * Where a slot goes when it must leave its relay: the relay (other than this one) that the fewest slots are on,
   * nearest after it in the list. Tunnels stay spread over the relays after a rolling restart, instead of piling
   * up on whichever came back first.
   */
  const nextRelay = (slot: number): number => {
    const n = settings.relays.length;
    const from = slotRelay[slot]!;
    let best = (from + 1) % n;
    let bestLoad = Number.POSITIVE_INFINITY;
    for (let step = 1; step < n; step++) {
      const candidate = (from + step) % n;
      const load = slotRelay.filter((r, i) => i !== slot && r === candidate).length;
      if (load < bestLoad) {
        best = candidate;
        bestLoad = load;
      }
    }
    return best;
  };

  const runSlot = async (index: number) => {
    const backoff = createBackoff({ minMs: settings.reconnectMinMs, maxMs: settings.reconnectMaxMs });
    let relayIndex = slotRelay[index]!;
    while (!stopping) {
      const relay = settings.relays[relayIndex]!;
      const hello = create(HelloSchema, {
        protocolVersion: PROTOCOL_VERSION,
        connectorId: settings.id,
        connectorVersion: FERRY_VERSION,
        targets: settings.targets.map((t) => ({ name: t.name })),
        maxConcurrentExchanges: settings.maxConcurrentExchanges,
        requestWindow: DEFAULT_WINDOW,
        hostname: hostname(),
        tunnelIndex: index,
        status: access.toProto(),
      });
      const conn = new TunnelConnection({
        relay,
        key: settings.key,
        hello,
        forwarder,
        log,
        network,
        isPaused: () => access.paused,
        ...(audit ? { observe: (head, key) => audit.observe(head, key) } : {}),
      });
      if (network.insecureSkipVerify && relay.protocol === "https:") {
        log.warn({ relay: relay.origin, slot: index }, "--insecure-skip-verify: not checking the relay's certificate; anyone on the path can read and change the tunnel");
      }
      const started = Date.now();
      let delayMs: number;
      live.add(conn); // while dialing too, so stop() can abort the attempt
      try {
        const welcome = await conn.open();
        log.info(
          { tunnel: welcome.tunnelId, node: welcome.nodeId, tenant: welcome.tenant, relay: relay.origin, slot: index },
          "tunnel connected",
        );
        // The status in Hello may be stale if the admin paused or resumed while we dialed.
        conn.sendStatus(access.toProto());
        accessWindow?.remind();
        notify();
        // Either the stream ends, or the relay asks us to move (GoAway): then dial a
        // replacement at once while this connection finishes what it carries.
        const moved = new Promise<"moved">((resolve) => (conn.onGoAway = () => resolve("moved")));
        const outcome = await Promise.race([conn.closed().then(() => "ended" as const), moved]);
        if (outcome === "moved") {
          notify();
          void conn.closed().catch(() => {}).finally(() => {
            live.delete(conn);
            notify();
          });
          relayIndex = slotRelay[index] = nextRelay(index);
          backoff.succeeded(Date.now() - started);
          delayMs = settings.relays.length > 1 ? 0 : backoff.next();
        } else {
          live.delete(conn);
          notify();
          log.warn({ relay: relay.origin, slot: index }, "tunnel closed by the relay");
          backoff.succeeded(Date.now() - started);
          delayMs = backoff.next();
        }
      } catch (err) {
        live.delete(conn);
        notify();
        if (stopping) break;
        const e = err as TunnelError;
        relayIndex = slotRelay[index] = nextRelay(index);
        // A tunnel that was up long enough resets the backoff; a dial that never got a Welcome
        // does not, however long it took (a relay that accepts and hangs).
        if (conn.welcome) backoff.succeeded(Date.now() - started);
        // A refused key or protocol version will not get better in a second; wait the longest delay.
        delayMs = e instanceof TunnelError && e.permanent ? settings.reconnectMaxMs : backoff.next();
        const level = e instanceof TunnelError && e.permanent ? "error" : "warn";
        // grpc-js says little more than "no connection": when the dial got nowhere, walk the path and say why.
        const cause = conn.welcome || (e instanceof TunnelError && e.permanent) ? undefined : await explain(relay);
        if (stopping) break;
        log[level]({ relay: relay.origin, slot: index, err: e.message, ...(cause ? { cause } : {}), retryIn: formatDuration(delayMs) }, "tunnel failed");
      }
      if (stopping) break;
      if (delayMs > 0) await sleep(delayMs, stopSignal.signal);
    }
  };

  /** Why the relay cannot be reached, from a step-by-step check (relay-diagnosis.ts); undefined when the path looks fine. */
  const explain = async (relay: URL): Promise<string | undefined> => {
    try {
      const d = await diagnoseRelay(relay, network);
      return d.ok ? undefined : describeDiagnosis(d);
    } catch (err) {
      return `diagnosis failed: ${(err as Error).message}`;
    }
  };

  let endWindow: () => void = () => {};
  const windowEnded = new Promise<void>((resolve) => (endWindow = resolve));
  let accessWindow: AccessWindow | undefined;
  const slots = Array.from({ length: slotCount }, (_, i) => runSlot(i));
  log.info(
    {
      id: settings.id,
      relays: settings.relays.map((r) => r.origin),
      targets: settings.targets.map((t) => t.name),
      tunnels: slotCount,
      ...(proxies.some(Boolean) ? { proxies: proxies.map((p) => (p ? describeProxy(p) : "direct")) } : {}),
    },
    "connector starting",
  );
  if (access.leaveTime) accessWindow = startAccessWindow(access.leaveTime, log, endWindow);
  const status = (): ConnectorStatusView => {
    const open = [...live].filter((c) => c.welcome && !c.relayDraining);
    return {
      id: settings.id,
      paused: access.paused,
      leaveTime: access.leaveTime?.toISOString() ?? null,
      tunnels: open.length,
      inFlight: [...live].reduce((n, c) => n + c.inFlight, 0),
      targets: settings.targets.map((t) => ({ name: t.name, allowedPaths: t.allowedPaths, allowedMethods: t.allowedMethods })),
    };
  };
  const pause = (by: string) => {
    if (access.pause()) log.info({ by }, "connector paused: new exchanges are refused");
  };
  const resume = (by: string) => {
    if (access.resume()) log.info({ by }, "connector resumed");
  };
  let control: ControlEndpoint | undefined;
  const controlUrl = settings.controlListen
    ? startControlEndpoint(settings.controlListen, { status, pause, resume }, log).then((c) => {
        control = c;
        if (stopping) void c.close();
        return c.url;
      })
    : Promise.resolve(undefined);
  controlUrl.catch((err: Error) => log.error({ err: err.message }, "cannot start the control endpoint"));

  return {
    get connectedTunnels() {
      return openCount();
    },
    windowEnded,
    controlUrl,
    status,
    pause,
    resume,
    reopenAuditLog: () => audit?.reopen(),
    waitConnected(n = 1) {
      return new Promise<void>((resolve) => {
        connectedWaiters.push({ n, resolve });
        notify();
      });
    },
    async stop() {
      stopping = true;
      stopSignal.abort();
      accessWindow?.stop();
      const conns = [...live].filter((c) => c.welcome);
      for (const c of live) if (!c.welcome) c.abort("connector stopped while dialing");
      log.info({ tunnels: conns.length, inFlight: conns.reduce((n, c) => n + c.inFlight, 0) }, "connector draining");
      await Promise.all(conns.map((c) => c.drain(settings.graceMs, "connector is shutting down")));
      // The relay ends each stream after our half-close; don't wait forever for a dead one.
      await Promise.all(conns.map((c) => withTimeout(c.closed().catch(() => {}), 2_000).then(() => c.abort("connector stopped"))));
      await Promise.all(slots);
      await forwarder.close();
      await Promise.all([control?.close(), audit?.close()]);
      log.info("connector stopped");
    },
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done);
  });
}

function withTimeout(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<void>((r) => (timer = setTimeout(r, ms)))]).finally(() => clearTimeout(timer));
}
