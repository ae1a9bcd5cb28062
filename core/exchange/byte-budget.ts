/**
 * Bytes several holders share, e.g. what one tenant's exchanges may queue on a
 * relay node while their clients read slowly. Windows bound each exchange;
 * this bounds them together, so many exchanges cannot add up to the process's
 * memory.
 */
export interface ByteBudget {
  /** Takes `bytes` if they fit; false (and nothing taken) when they would pass the limit. */
  take(bytes: number): boolean;
  /** Returns bytes taken earlier (handed on, or dropped). */
  give(bytes: number): void;
  /** Bytes taken now. */
  readonly used: number;
}

export function createByteBudget(limit: number): ByteBudget {
  let used = 0;
  return {
    take(bytes) {
      if (used + bytes > limit) return false;
      used += bytes;
      return true;
    },
    give(bytes) {
      used = Math.max(0, used - bytes);
    },
    get used() {
      return used;
    },
  };
}
