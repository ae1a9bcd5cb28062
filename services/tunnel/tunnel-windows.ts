import type { Http2Session } from "node:http2";

/**
 * HTTP/2 receive windows of a connector's tunnel session. Clients get small
 * ones (limits.clientStreamWindow/clientConnectionWindow: what an anonymous
 * client can park in the relay); a tunnel carries many exchanges, each with its
 * own credit, so its stream and connection windows only limit throughput and
 * are opened wide, but only once the connector has authenticated.
 */
export const TUNNEL_STREAM_WINDOW = 1024 * 1024;
export const TUNNEL_CONNECTION_WINDOW = 32 * 1024 * 1024;

/** Sessions widened for a tunnel: they carry tunnels only, or their wide windows would be a client's too. */
const widened = new WeakSet<Http2Session>();

/** Whether the session was widened for a tunnel (then nothing but tunnels may use it). */
export function isTunnelSession(session: Http2Session): boolean {
  return widened.has(session);
}

/** Widens the windows of an authenticated connector's session (its open tunnel stream included). */
export function widenTunnelSession(session: Http2Session): void {
  // Once per session: every tunnel on it would otherwise send SETTINGS again, and Node refuses more than a few unacknowledged.
  if (session.destroyed || session.closed || widened.has(session)) return;
  widened.add(session);
  session.setLocalWindowSize(TUNNEL_CONNECTION_WINDOW);
  // A new SETTINGS_INITIAL_WINDOW_SIZE applies to streams already open too (RFC 9113 §6.9.2).
  session.settings({ initialWindowSize: TUNNEL_STREAM_WINDOW });
}
