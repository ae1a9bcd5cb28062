/**
 * Resolves once `check()` holds, re-checking after each turn of the event loop.
 * For state that changes through I/O the test does not await directly (a target
 * receiving a request, a relay handling a message); never a timer.
 */
export async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((resolve) => setImmediate(resolve));
}

/**
 * Resolves once `check()` holds, re-checking every few milliseconds; for
 * conditions that change with the clock (an expiry), not with I/O. Fails after
 * `timeoutMs` with `what` in the message.
 */
export async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
