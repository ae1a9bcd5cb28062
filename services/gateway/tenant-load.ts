import { type ByteBudget, createByteBudget } from "../../clients/sdk/byte-budget.js";
import { FerryError } from "../../clients/sdk/errors.js";
import type { PeerFaults } from "../observability/peer-faults.js";
import { clientShare, type Limits } from "../relay/limits.js";
import { sourceKey } from "../auth/source-key.js";

/** One exchange's place in its tenant's load, held from admission to the end of the response. */
export interface Admission {
  /** The memory the tenant's exchanges share on this node for bodies waiting for their clients. */
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
  bySource: Map<string, number>;
  budget: ByteBudget;
}

export function createTenantLoad(limits: Limits, faults: PeerFaults): TenantLoad {
  // Entries exist only while a tenant has an exchange in progress: the map never outgrows what is in flight.
  const loads = new Map<string, Load>();
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
      const held = load?.bySource.get(source) ?? 0;
      if (held >= share) {
        faults.limited("clientSharePercent");
        throw new FerryError("unavailable", "client_busy", `this client has ${held} exchanges in progress with tenant "${tenant}", its share`, {
          retryAfterSeconds: 1,
        });
      }
      const entry = load ?? { active: 0, bySource: new Map<string, number>(), budget: countedBudget(limits.tenantBufferBytes, faults) };
      if (!load) loads.set(tenant, entry);
      entry.active++;
      entry.bySource.set(source, held + 1);
      let released = false;
      return {
        budget: entry.budget,
        release() {
          if (released) return;
          released = true;
          const left = (entry.bySource.get(source) ?? 1) - 1;
          if (left === 0) entry.bySource.delete(source);
          else entry.bySource.set(source, left);
          if (--entry.active === 0) loads.delete(tenant);
        },
      };
    },
    activeFor: (tenant) => loads.get(tenant)?.active ?? 0,
  };
}

/** A tenant's byte budget whose refusals are counted (the exchange that hit it is reset by the Exchange itself). */
function countedBudget(limit: number, faults: PeerFaults): ByteBudget {
  const budget = createByteBudget(limit);
  return {
    take(bytes) {
      if (budget.take(bytes)) return true;
      faults.limited("tenantBufferBytes");
      return false;
    },
    give: (bytes) => budget.give(bytes),
    get used() {
      return budget.used;
    },
  };
}
