/**
 * Resolves after `ms`, or at once when `signal` aborts (never rejects), and
 * lets go of the signal either way. `unref`: the timer alone does not keep the
 * process alive (background refreshes; a reconnect back-off must keep it).
 */
export function abortableDelay(ms: number, signal: AbortSignal, opts: { unref?: boolean } = {}): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    if (opts.unref) timer.unref();
    signal.addEventListener("abort", done);
  });
}
