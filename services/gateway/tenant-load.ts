import { type ByteBudget, createByteBudget } from "../../core/exchange/byte-budget.js";
import { FerryError } from "../../core/errors.js";
import type { PeerFaults } from "../limits/peer-faults.js";
import { DEFAULT_WINDOW } from "../../core/exchange/protocol.js";
import { clientShare, type Limits, MIN_CLIENT_SHARE } from "../limits/limits.js";
import { sourceKey } from "../auth/source-key.js";

/** One exchange's place in its tenant's load, held from admission to the end of the response. */
export interface Admission {
  /**
   * The memory this client's exchanges may take on this node for bodies waiting
   * for their clients: its share of what the tenant's exchanges share.
   */
  readonly budget: ByteBudget;
  /** Gives the place back; once. */
  release(): void;
}

export interface TenantLoad {
  /**
   * Admits one exchange of `tenant` from the client at `clientAddress`, or
   * throws 503: tenant_busy when the tenant has `limit` in progress (its own
   * maxConcurrentExchanges, or limits.tenantMaxExchanges when it sets none),
   * client_busy when this client source holds its share of that limit
   * (limits.clientSharePercent), so one client cannot take a tenant's capacity
   * from all the others.
   */
  admit(tenant: string, tenantLimit: number, clientAddress: string): Admission;
  /** Exchanges in progress for one tenant. */
  activeFor(tenant: string): number;
}

interface Load {
  active: number;
  bySource: Map<string, SourceLoad>;
  /** What all of the tenant's exchanges may queue on this node. */
  budget: ByteBudget;
}

interface SourceLoad {
  active: number;
  /** Its exchanges' budget: a share of the tenant's (clientSharePercent), so one client cannot spend it all. */
  budget: ByteBudget;
}

export function createTenantLoad(limits: Limits, faults: PeerFaults): TenantLoad {
  // Entries outlive their last exchange (a tenant served at a steady rate often has none in flight between two
  // requests, and remaking them each time is garbage); idle ones go when a map grows past IDLE_KEPT.
  const loads = new Map<string, Load>();
  const sourceBytes = clientBufferShare(limits);
  return {
    admit(tenant, tenantLimit, clientAddress) {
      const limit = tenantLimit > 0 ? tenantLimit : limits.tenantMaxExchanges;
      const source = sourceKey(clientAddress);
      const load = loads.get(tenant);
      if (load && load.active >= limit) {
        faults.limited(tenantLimit > 0 ? "maxConcurrentExchanges" : "tenantMaxExchanges");
        throw new FerryError("unavailable", "tenant_busy", `tenant "${tenant}" has ${limit} exchanges in progress, its limit`, { retryAfterSeconds: 1 });
      }
      const share = clientShare(limits, limit);
      const held = load?.bySource.get(source);
      if ((held?.active ?? 0) >= share) {
        faults.limited("clientSharePercent");
        throw new FerryError("unavailable", "client_busy", `this client has ${held!.active} exchanges in progress with tenant "${tenant}", its share`, {
          retryAfterSeconds: 1,
        });
      }
      const entry = load ?? { active: 0, bySource: new Map<string, SourceLoad>(), budget: createByteBudget(limits.tenantBufferBytes) };
      if (!load) addEntry(loads, tenant, entry);
      const mine = held ?? { active: 0, budget: bothBudgets(createByteBudget(sourceBytes), entry.budget, faults) };
      if (!held) addEntry(entry.bySource, source, mine);
      entry.active++;
      mine.active++;
      let released = false;
      return {
        budget: mine.budget,
        release() {
          if (released) return;
          released = true;
          mine.active--;
          entry.active--;
        },
      };
    },
    activeFor: (tenant) => loads.get(tenant)?.active ?? 0,
  };
}

/** Entries kept while idle before a sweep; bounds what clients (one entry per source) can make a tenant's map hold. */
const IDLE_KEPT = 256;

/** Adds an entry, first dropping idle ones (nothing in flight, so nothing taken of a budget) once the map is large. */
function addEntry<V extends { active: number }>(map: Map<string, V>, key: string, value: V): void {
  if (map.size >= IDLE_KEPT) for (const [k, v] of map) if (v.active === 0) map.delete(k);
  map.set(key, value);
}

/** A source's share of a tenant's buffer budget: like its share of exchanges, never less than its smallest share of full windows. */
function clientBufferShare(limits: Limits): number {
  const share = Math.ceil((limits.tenantBufferBytes * limits.clientSharePercent) / 100);
  return Math.min(limits.tenantBufferBytes, Math.max(share, MIN_CLIENT_SHARE * DEFAULT_WINDOW));
}

/**
 * Bytes taken from the source's budget and the tenant's together, counted when
 * either refuses (the exchange that hit it is reset by the Exchange itself).
 */
function bothBudgets(source: ByteBudget, tenant: ByteBudget, faults: PeerFaults): ByteBudget {
  return {
    take(bytes) {
      if (!source.take(bytes)) {
        faults.limited("clientSharePercent", { of: "tenantBufferBytes" });
        return false;
      }
      if (tenant.take(bytes)) return true;
      source.give(bytes);
      faults.limited("tenantBufferBytes");
      return false;
    },
    give(bytes) {
      source.give(bytes);
      tenant.give(bytes);
    },
    get used() {
      return source.used;
    },
  };
}
