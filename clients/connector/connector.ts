import type { Logger } from "../../core/logger.js";
import { createAccessStatus } from "./access-status.js";
import { type AccessWindow, startAccessWindow } from "./access-window.js";
import type { ConnectorSettings } from "./connector-config.js";
import { type ConnectorStatusView, type ControlEndpoint, startControlEndpoint } from "./control-endpoint.js";
import { createExchangeAudit } from "./exchange-audit.js";
import { createIdentityCheck } from "./identity-check.js";
import { describeProxy, proxyFor } from "./proxy.js";
import { relayNetwork } from "./relay-channel.js";
import { createTargetForwarder } from "./target-forwarder.js";
import type { TunnelConnection } from "./tunnel-connection.js";
import { runTunnelSlots } from "./tunnel-slot.js";

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
 * own dial loop (a slot, tunnel-slot.ts), and serves the local admin's
 * status, pause and resume.
 */
export function startConnector(settings: ConnectorSettings, log: Logger): Connector {
  const audit = settings.auditLog ? createExchangeAudit(settings.auditLog, log) : undefined;
  const network = relayNetwork(settings);
  // Only when a target asks for it: the others never look at an identity.
  const identity = settings.targets.some((t) => t.requireIdentity) ? createIdentityCheck({ network }) : undefined;
  const forwarder = createTargetForwarder(settings.targets, log, {
    ...(audit ? { onRefused: (ex, outcome) => audit.refused(ex, outcome) } : {}),
    ...(identity ? { identity } : {}),
  });
  const access = createAccessStatus(settings.runForMs === undefined ? undefined : new Date(Date.now() + settings.runForMs));
  access.onChange(() => {
    const status = access.toProto();
    for (const c of live) c.sendStatus(status);
  });
  const live = new Set<TunnelConnection>();
  const stopSignal = new AbortController();
  const connectedWaiters: Array<{ n: number; resolve(): void }> = [];
  const slotCount = Math.max(settings.tunnels, 1);
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

  let endWindow: () => void = () => {};
  const windowEnded = new Promise<void>((resolve) => (endWindow = resolve));
  let accessWindow: AccessWindow | undefined;
  const slots = runTunnelSlots(slotCount, {
    settings,
    network,
    forwarder,
    access,
    audit,
    log,
    live,
    changed: notify,
    connected: () => accessWindow?.remind(),
    stop: stopSignal.signal,
  });
  log.info(
    {
      id: settings.id,
      relays: settings.relays.map((r) => r.origin),
      targets: settings.targets.map((t) => t.name),
      ...(identity ? { requireIdentity: settings.targets.filter((t) => t.requireIdentity).map((t) => t.name) } : {}),
      tunnels: slotCount,
      ...(proxies.some(Boolean) ? { proxies: proxies.map((p) => (p ? describeProxy(p) : "direct")) } : {}),
    },
    "connector starting",
  );
  if (access.leaveTime) accessWindow = startAccessWindow(access.leaveTime, log, endWindow);
  const status = (): ConnectorStatusView => ({
    id: settings.id,
    paused: access.paused,
    leaveTime: access.leaveTime?.toISOString() ?? null,
    tunnels: openCount(),
    inFlight: [...live].reduce((n, c) => n + c.inFlight, 0),
    targets: settings.targets.map((t) => ({
      name: t.name,
      allowedPaths: t.allowedPaths,
      allowedMethods: t.allowedMethods,
      ...(t.requireIdentity ? { requireIdentity: true } : {}),
    })),
  });
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
        if (stopSignal.signal.aborted) void c.close();
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
      stopSignal.abort();
      accessWindow?.stop();
      const conns = [...live].filter((c) => c.welcome);
      for (const c of live) if (!c.welcome) c.abort("connector stopped while dialing");
      log.info({ tunnels: conns.length, inFlight: conns.reduce((n, c) => n + c.inFlight, 0) }, "connector draining");
      await Promise.all(conns.map((c) => c.drain(settings.graceMs, "connector is shutting down")));
      // The relay ends each stream after our half-close; don't wait forever for a dead one.
      await Promise.all(conns.map((c) => withTimeout(c.closed().catch(() => {}), 2_000).then(() => c.abort("connector stopped"))));
      await slots;
      await forwarder.close();
      await Promise.all([control?.close(), audit?.close()]);
      log.info("connector stopped");
    },
  };
}

function withTimeout(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<void>((r) => (timer = setTimeout(r, ms)))]).finally(() => clearTimeout(timer));
}
