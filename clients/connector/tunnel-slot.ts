import { abortableDelay } from "../../core/abortable-delay.js";
import { create } from "@bufbuild/protobuf";
import { hostname } from "node:os";
import { HelloSchema } from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";
import { formatDuration } from "../../core/duration.js";
import type { Logger } from "../../core/logger.js";
import { DEFAULT_WINDOW, PROTOCOL_VERSION } from "../../core/exchange/protocol.js";
import { FERRY_VERSION } from "../../core/version.js";
import type { AccessStatus } from "./access-status.js";
import { createBackoff } from "./backoff.js";
import type { ConnectorSettings } from "./connector-config.js";
import type { ExchangeAudit } from "./exchange-audit.js";
import type { RelayNetwork } from "./relay-channel.js";
import { describeDiagnosis, diagnoseRelay } from "./relay-diagnosis.js";
import { type TargetForwarder, viaTunnel } from "./target-forwarder.js";
import { TunnelConnection, TunnelError } from "./tunnel-connection.js";

/** What the slots share with the connector that runs them. */
export interface TunnelSlotOptions {
  settings: ConnectorSettings;
  network: RelayNetwork;
  forwarder: TargetForwarder;
  access: AccessStatus;
  audit: ExchangeAudit | undefined;
  log: Logger;
  /** Every slot's connection, while dialing too, so the connector's stop() can abort the attempt. */
  live: Set<TunnelConnection>;
  /** A tunnel was welcomed, was asked to move, or ended: the number of open tunnels may have changed. */
  changed(): void;
  /** A tunnel was welcomed (before `changed`). */
  connected(): void;
  /** Aborted when the connector stops: no slot dials again, a back-off wait ends at once. */
  stop: AbortSignal;
}

/**
 * Runs `count` slots, each its own dial loop with capped exponential backoff and full jitter: it keeps one tunnel
 * open, dialing again when that one ends or a replacement when the relay asks it to move. Slot i starts at relay i and
 * moves to another relay when one fails or drains (nextRelay), so tunnels spread over relay nodes. Resolves once
 * every slot has stopped.
 */
export async function runTunnelSlots(count: number, o: TunnelSlotOptions): Promise<void> {
  /** The relay each slot is on (or dialing). */
  const slotRelay: number[] = Array.from({ length: count }, (_, i) => i % o.settings.relays.length);
  await Promise.all(slotRelay.map((_, i) => runTunnelSlot(i, slotRelay, o)));
}

/**
 * Where a slot goes when it must leave its relay: the relay (other than this one) that the fewest slots are on,
 * nearest after it in the list. Tunnels stay spread over the relays after a rolling restart, instead of piling
 * up on whichever came back first.
 */
export function nextRelay(slotRelay: readonly number[], slot: number, relayCount: number): number {
  const from = slotRelay[slot]!;
  let best = (from + 1) % relayCount;
  let bestLoad = Number.POSITIVE_INFINITY;
  for (let step = 1; step < relayCount; step++) {
    const candidate = (from + step) % relayCount;
    const load = slotRelay.filter((r, i) => i !== slot && r === candidate).length;
    if (load < bestLoad) {
      best = candidate;
      bestLoad = load;
    }
  }
  return best;
}

async function runTunnelSlot(index: number, slotRelay: number[], o: TunnelSlotOptions): Promise<void> {
  const { settings, access, audit, log, live, network } = o;
  const backoff = createBackoff({ minMs: settings.reconnectMinMs, maxMs: settings.reconnectMaxMs });
  const move = () => (slotRelay[index] = nextRelay(slotRelay, index, settings.relays.length));
  let relayIndex = slotRelay[index]!;
  while (!o.stop.aborted) {
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
    const conn: TunnelConnection = new TunnelConnection({
      relay,
      key: settings.key,
      hello,
      // Each request knows its tunnel: an identity is checked against this relay's keys and its Welcome's tenant.
      forwarder: viaTunnel(o.forwarder, {
        relay,
        get tenant() {
          return conn.welcome?.tenant;
        },
      }),
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
      o.connected();
      o.changed();
      // Either the stream ends, or the relay asks us to move (GoAway): then dial a
      // replacement at once while this connection finishes what it carries.
      const moved = new Promise<"moved">((resolve) => (conn.onGoAway = () => resolve("moved")));
      const outcome = await Promise.race([conn.closed().then(() => "ended" as const), moved]);
      if (outcome === "moved") {
        o.changed();
        void conn.closed().catch(() => {}).finally(() => {
          live.delete(conn);
          o.changed();
        });
        relayIndex = move();
        backoff.succeeded(Date.now() - started);
        delayMs = settings.relays.length > 1 ? 0 : backoff.next();
      } else {
        live.delete(conn);
        o.changed();
        log.warn({ relay: relay.origin, slot: index }, "tunnel closed by the relay");
        backoff.succeeded(Date.now() - started);
        delayMs = backoff.next();
      }
    } catch (err) {
      live.delete(conn);
      o.changed();
      if (o.stop.aborted) break;
      const e = err as TunnelError;
      relayIndex = move();
      // A tunnel that was up long enough resets the backoff; a dial that never got a Welcome
      // does not, however long it took (a relay that accepts and hangs).
      if (conn.welcome) backoff.succeeded(Date.now() - started);
      // A refused key or protocol version will not get better in a second; wait the longest delay.
      delayMs = e instanceof TunnelError && e.permanent ? settings.reconnectMaxMs : backoff.next();
      const level = e instanceof TunnelError && e.permanent ? "error" : "warn";
      // grpc-js says little more than "no connection": when the dial got nowhere, walk the path and say why.
      const cause = conn.welcome || (e instanceof TunnelError && e.permanent) ? undefined : await explain(relay, network);
      if (o.stop.aborted) break;
      log[level]({ relay: relay.origin, slot: index, err: e.message, ...(cause ? { cause } : {}), retryIn: formatDuration(delayMs) }, "tunnel failed");
    }
    if (o.stop.aborted) break;
    if (delayMs > 0) await abortableDelay(delayMs, o.stop);
  }
}

/** Why the relay cannot be reached, from a step-by-step check (relay-diagnosis.ts); undefined when the path looks fine. */
async function explain(relay: URL, network: RelayNetwork): Promise<string | undefined> {
  try {
    const d = await diagnoseRelay(relay, network);
    return d.ok ? undefined : describeDiagnosis(d);
  } catch (err) {
    return `diagnosis failed: ${(err as Error).message}`;
  }
}
