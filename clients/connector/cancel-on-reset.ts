import type { Exchange, ExchangeReset } from "../../core/exchange/exchange.js";

/**
 * Stops the target's side of an exchange when the exchange is reset (the
 * client went away, its deadline passed), or at once if it already was. Set
 * up before each step that waits (a connection, a stream, an upgrade), so a
 * reset that comes meanwhile is not lost: Exchange calls onReset only once,
 * and never for a handler set after the reset. Replaces the previous step's.
 */
export function cancelOnReset(ex: Exchange, cancel: (reset: ExchangeReset) => void): void {
  ex.onReset = cancel;
  const reset = ex.isReset;
  if (reset) cancel(reset);
}
