import type { Limits } from "../limits/limits.js";
import { refill, setNewest } from "../../core/bounded-map.js";
import { GrpcStatus } from "../http/grpc-status.js";
import { GrpcError } from "./grpc-call.js";
import type { RelayTunnel } from "./relay-tunnel.js";

/**
 * What one credential may hold on this node: how many tunnels (per connector
 * key, or per certificate name for a tunnel without a key; per tenant) and how
 * fast it may open them. Every tunnel costs memory, timers, an audit record
 * and a log line on connect and on disconnect, so a key in a reconnect loop (or
 * in an attacker's hands) must not be able to open them without end.
 *
 * The rate is a token bucket per credential: OPEN_BURST_FACTOR x
 * maxTunnelsPerKey tunnels at once (a connector and its restart, or a relay
 * restart, need its --tunnels at once, twice), then maxTunnelsPerKey per
 * minute. A connector that reconnects with its usual back-off (1 s doubling
 * to 20 s) never comes near it.
 */
export interface TunnelAdmission {
  /** Takes one tunnel opening from `principal`'s bucket; throws a LimitRefusal when it is empty. */
  takeOpen(principal: string): void;
  /**
   * Throws a LimitRefusal when one more tunnel of `principal`
   * in `tenant` would pass a limit. `held` is this node's live tunnels of
   * the tenant, probes included. Call it in the same turn as registering the
   * tunnel, so two tunnels cannot both pass it.
   */
  checkRoom(held: readonly RelayTunnel[], principal: string, tenant: string): void;
}

export const OPEN_BURST_FACTOR = 2;
const MAX_BUCKETS = 10_000;

/** A tunnel refused by a limit (RESOURCE_EXHAUSTED): the limit's counter name and the audit reason, both fixed strings. */
export class LimitRefusal extends GrpcError {
  constructor(
    readonly limit: string,
    readonly reason: string,
    message: string,
  ) {
    super(GrpcStatus.RESOURCE_EXHAUSTED, message);
  }
}

export function createTunnelAdmission(limits: Limits, now: () => number = Date.now): TunnelAdmission {
  const burst = OPEN_BURST_FACTOR * limits.maxTunnelsPerKey;
  const perMs = limits.maxTunnelsPerKey / 60_000;
  // Insertion order is last use: the least recently used bucket goes first (a full bucket is the same as none).
  const buckets = new Map<string, { tokens: number; at: number }>();
  const refuse = (limit: string, reason: string, message: string): never => {
    throw new LimitRefusal(limit, reason, message);
  };
  return {
    takeOpen(principal) {
      const t = now();
      const b = buckets.get(principal) ?? { tokens: burst, at: t };
      refill(b, burst, perMs, t);
      setNewest(buckets, principal, b, MAX_BUCKETS);
      if (b.tokens < 1) {
        const seconds = Math.ceil((1 - b.tokens) / perMs / 1000);
        refuse("tunnelOpenRate", "opening tunnels too fast", `this credential opens tunnels too fast (at most ${limits.maxTunnelsPerKey} a minute): retry in ${seconds}s`);
      }
      b.tokens -= 1;
    },
    checkRoom(held, principal, tenant) {
      if (held.length >= limits.maxTunnelsPerTenant) {
        refuse("maxTunnelsPerTenant", "too many tunnels for the tenant", `tenant "${tenant}" already has ${held.length} tunnels on this relay node (at most ${limits.maxTunnelsPerTenant})`);
      }
      const mine = held.reduce((n, t) => (t.info.principal === principal ? n + 1 : n), 0);
      if (mine >= limits.maxTunnelsPerKey) {
        refuse("maxTunnelsPerKey", "too many tunnels for the credential", `this credential already has ${mine} tunnels on this relay node (at most ${limits.maxTunnelsPerKey}): lower the connector's --tunnels, or stop its other copies`);
      }
    },
  };
}
