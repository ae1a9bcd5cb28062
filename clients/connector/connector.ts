import { create } from "@bufbuild/protobuf";
import { hostname } from "node:os";
import { HelloSchema } from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";
import { createBackoff } from "../sdk/backoff.js";
import { formatDuration } from "../sdk/duration.js";
import type { Logger } from "../sdk/logger.js";
import { DEFAULT_WINDOW, PROTOCOL_VERSION } from "../sdk/protocol.js";
import { FERRY_VERSION } from "../sdk/version.js";
import type { ConnectorSettings } from "./connector-config.js";
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
}

/**
 * The on-prem side: keeps `tunnels` streams open to the relays, each in its
 * own dial loop (a slot) with capped exponential backoff and full jitter.
 * Slot i starts at relay i and moves to the next relay when one fails or
 * drains, so tunnels spread over relay nodes.
 */
export function startConnector(settings: ConnectorSettings, log: Logger): Connector {
  const forwarder = createTargetForwarder(settings.targets, log);
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
      });
      if (network.insecureSkipVerify && relay.protocol === "https:") {
        log.warn({ relay: relay.origin, slot: index }, "--insecure-skip-verify: not checking the relay's certificate; anyone on the path can read and change the tunnel");
      }
      const conn = new TunnelConnection({ relay, key: settings.key, hello, forwarder, log, network });
      const started = Date.now();
      let delayMs: number;
      live.add(conn); // while dialing too, so stop() can abort the attempt
      try {
        const welcome = await conn.open();
        log.info(
          { tunnel: welcome.tunnelId, node: welcome.nodeId, tenant: welcome.tenant, relay: relay.origin, slot: index },
          "tunnel connected",
        );
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

  return {
    get connectedTunnels() {
      return openCount();
    },
    waitConnected(n = 1) {
      return new Promise<void>((resolve) => {
        connectedWaiters.push({ n, resolve });
        notify();
      });
    },
    async stop() {
      stopping = true;
      stopSignal.abort();
      const conns = [...live].filter((c) => c.welcome);
      for (const c of live) if (!c.welcome) c.abort("connector stopped while dialing");
      log.info({ tunnels: conns.length, inFlight: conns.reduce((n, c) => n + c.inFlight, 0) }, "connector draining");
      await Promise.all(conns.map((c) => c.drain(settings.graceMs, "connector is shutting down")));
      // The relay ends each stream after our half-close; don't wait forever for a dead one.
      await Promise.all(conns.map((c) => withTimeout(c.closed().catch(() => {}), 2_000).then(() => c.abort("connector stopped"))));
      await Promise.all(slots);
      await forwarder.close();
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
