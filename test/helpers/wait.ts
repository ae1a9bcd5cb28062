/**
 * Resolves once `check()` holds, re-checking after each turn of the event loop.
 * For state that changes through I/O the test does not await directly (a target
 * receiving a request, a relay handling a message); never a timer.
 */
export async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((resolve) => setImmediate(resolve));
}
