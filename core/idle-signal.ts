/**
 * Promises that settle once nothing is in flight: a drain waits on `idle()`,
 * and the owner calls `changed()` after anything that may have made it idle
 * (an exchange released, the whole thing closed). One idea, used by the
 * gateway and both tunnel ends.
 */
export interface IdleSignal {
  /** Resolves at once when idle, else at the first `changed()` that finds it idle. */
  idle(): Promise<void>;
  changed(): void;
}

export function createIdleSignal(isIdle: () => boolean): IdleSignal {
  let waiters: Array<() => void> = [];
  return {
    idle: () => (isIdle() ? Promise.resolve() : new Promise((resolve) => waiters.push(resolve))),
    changed() {
      if (waiters.length === 0 || !isIdle()) return;
      const woken = waiters;
      waiters = [];
      for (const w of woken) w();
    },
  };
}
