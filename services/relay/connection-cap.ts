import type { BlockList, Server, Socket } from "node:net";
import { isTrusted } from "../auth/client-address.js";
import { sourceKey, unmapIPv4 } from "../auth/source-key.js";
import type { PeerFaults } from "../limits/peer-faults.js";
import type { Limits } from "../limits/limits.js";

export interface ConnectionCapOptions {
  limits: Pick<Limits, "maxConnections" | "maxConnectionsPerIp">;
  faults: PeerFaults;
  /** Exempt from the per-address cap: a load balancer carries many clients on its own address. */
  trustedProxies?: BlockList;
}

/**
 * Caps the sockets one port holds, in all and per source (an IPv4 address or an IPv6 /64). A socket
 * over a cap is destroyed at once, before a TLS handshake or the protocol sniff
 * has cost anything, and counted. The global cap is Node's own
 * (server.maxConnections closes the handle at accept and emits 'drop'); the
 * per-address one is counted here. Returns the check for each accepted socket:
 * false when it was refused (and destroyed).
 */
export function capConnections(server: Server, opts: ConnectionCapOptions): (socket: Socket) => boolean {
  const { limits, faults, trustedProxies } = opts;
  server.maxConnections = limits.maxConnections;
  server.on("drop", () => faults.limited("maxConnections"));
  const perAddress = new Map<string, number>();
  return (socket) => {
    // No address: the peer is already gone.
    if (socket.remoteAddress === undefined) {
      socket.destroy();
      return false;
    }
    const unmapped = unmapIPv4(socket.remoteAddress);
    if (trustedProxies && isTrusted(trustedProxies, unmapped)) return true;
    // One source as the other per-source limits count it: an IPv4 address, an IPv6 /64.
    const address = sourceKey(unmapped);
    const held = perAddress.get(address) ?? 0;
    if (held >= limits.maxConnectionsPerIp) {
      faults.limited("maxConnectionsPerIp");
      socket.destroy();
      return false;
    }
    perAddress.set(address, held + 1);
    socket.once("close", () => {
      const left = (perAddress.get(address) ?? 1) - 1;
      if (left === 0) perAddress.delete(address);
      else perAddress.set(address, left);
    });
    return true;
  };
}
