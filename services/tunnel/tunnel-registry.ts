import type { RelayTunnel } from "./relay-tunnel.js";
import { routingRefusal } from "./routing-refusal.js";

const MAX_SEEN_TARGETS = 1000;

/**
 * The live tunnels of this node, by tenant, and the choice of a tunnel for a
 * new exchange: among the tenant's tunnels that serve the target and are not
 * draining, paused or full, the least loaded (ties broken at random, so several
 * connectors of one tenant share the load).
 *
 * Probe tunnels (ferry doctor) are held apart: they count against the
 * tunnel limits and end with their credentials like any tunnel, but nothing
 * that routes, lists or announces tunnels sees them.
 */
export class TunnelRegistry {
  private readonly byTenant = new Map<string, Set<RelayTunnel>>();
  private readonly probesByTenant = new Map<string, Set<RelayTunnel>>();
  /** Targets seen per tenant since start, to tell "connector offline" (503) from "no such target" (404). */
  private readonly seenTargets = new Map<string, Set<string>>();
  private readonly listeners: Array<() => void> = [];

  /** Called after a tunnel comes, goes or starts draining (the cluster re-announces what this node serves). */
  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  /** Tells listeners that a tunnel's state changed (it started draining). */
  changed(): void {
    for (const l of this.listeners) l();
  }

  add(tunnel: RelayTunnel): void {
    const { tenant, targets } = tunnel.info;
    if (tunnel.info.probe) {
      addTo(this.probesByTenant, tenant, tunnel);
      return;
    }
    addTo(this.byTenant, tenant, tunnel);
    let seen = this.seenTargets.get(tenant);
    if (!seen) this.seenTargets.set(tenant, (seen = new Set()));
    for (const t of targets) {
      seen.delete(t);
      seen.add(t);
    }
    // Bounded: a connector that announces new names on every reconnect pushes out the oldest.
    for (const old of seen) {
      if (seen.size <= MAX_SEEN_TARGETS) break;
      seen.delete(old);
    }
    this.changed();
  }

  remove(tunnel: RelayTunnel): void {
    if (tunnel.info.probe) {
      removeFrom(this.probesByTenant, tunnel);
      return;
    }
    if (removeFrom(this.byTenant, tunnel)) this.changed();
  }

  /** Live tunnels of one tenant, or of all tenants (probes not included: these are the ones that carry exchanges). */
  tunnels(tenant?: string): RelayTunnel[] {
    return listOf(this.byTenant, tenant);
  }

  /** Live probe tunnels of one tenant, or of all. */
  probes(tenant?: string): RelayTunnel[] {
    return listOf(this.probesByTenant, tenant);
  }

  /** Every live tunnel, probes included: what a revoked credential or a tunnel limit must take into account. */
  held(tenant?: string): RelayTunnel[] {
    return [...this.tunnels(tenant), ...this.probes(tenant)];
  }

  /** Whether a live tunnel of the tenant serves the target. */
  serves(tenant: string, target: string): boolean {
    for (const t of this.byTenant.get(tenant) ?? []) if (t.info.targets.has(target)) return true;
    return false;
  }

  /** Forgets a deleted tenant's history. */
  forgetTenant(tenant: string): void {
    this.seenTargets.delete(tenant);
  }

  /** The tunnel to carry a new exchange, or a FerryError saying why there is none. */
  pick(tenant: string, target: string): RelayTunnel {
    const all = this.byTenant.get(tenant);
    let serving = 0;
    let open = 0;
    let paused = 0;
    let best: RelayTunnel[] = [];
    for (const t of all ?? []) {
      if (!t.info.targets.has(target)) continue;
      serving++;
      if (t.draining || t.closed) continue;
      if (t.paused) {
        paused++;
        continue;
      }
      open++;
      if (t.inFlight >= t.info.capacity || t.outbox.congested) continue;
      if (best.length === 0 || t.inFlight < best[0]!.inFlight) best = [t];
      else if (t.inFlight === best[0]!.inFlight) best.push(t);
    }
    if (best.length > 0) return best[Math.floor(Math.random() * best.length)]!;
    throw routingRefusal(tenant, target, {
      busy: open > 0,
      paused: paused > 0,
      unknownTarget: serving === 0 && all !== undefined && all.size > 0 && !this.seenTargets.get(tenant)?.has(target),
    });
  }
}

function addTo(map: Map<string, Set<RelayTunnel>>, tenant: string, tunnel: RelayTunnel): void {
  let set = map.get(tenant);
  if (!set) map.set(tenant, (set = new Set()));
  set.add(tunnel);
}

/** Whether the tunnel was there. */
function removeFrom(map: Map<string, Set<RelayTunnel>>, tunnel: RelayTunnel): boolean {
  const set = map.get(tunnel.info.tenant);
  if (!set?.delete(tunnel)) return false;
  if (set.size === 0) map.delete(tunnel.info.tenant);
  return true;
}

function listOf(map: Map<string, Set<RelayTunnel>>, tenant: string | undefined): RelayTunnel[] {
  if (tenant !== undefined) return [...(map.get(tenant) ?? [])];
  return [...map.values()].flatMap((s) => [...s]);
}
