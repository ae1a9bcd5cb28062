import type { TunnelInfo } from "./relay-tunnel.js";

/**
 * Why a tunnel's credentials no longer hold at `now`, or undefined. A rotated
 * key stops at its expire time; a client certificate at its notAfter: either
 * way the tunnel must close then, not at the next reconnect (which could be
 * weeks away for a healthy connector).
 */
export function expiredCredential(info: Pick<TunnelInfo, "certificateExpires">, keyExpiresMs: number | undefined, now: number): string | undefined {
  if (keyExpiresMs !== undefined && keyExpiresMs <= now) return "connector key has expired (it was rotated)";
  if (info.certificateExpires && info.certificateExpires.getTime() <= now) return "connector certificate has expired";
  return undefined;
}
