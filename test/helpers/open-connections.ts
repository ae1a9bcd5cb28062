import type { Server, Socket } from "node:net";

export interface OpenConnections {
  /** Connections accepted and not yet closed, as the server sees them. */
  readonly open: number;
  /** Connections accepted since tracking began. */
  readonly total: number;
  /** The open sockets, e.g. to see that the peer stopped reading (bytes wait in `writableLength`). */
  readonly sockets: ReadonlySet<Socket>;
}

/**
 * Counts a server's TCP connections (node:net, node:http or node:http2): for
 * leak checks that wait until the peer has let go of what it no longer uses.
 */
export function trackConnections(server: Server): OpenConnections {
  const sockets = new Set<Socket>();
  let total = 0;
  server.on("connection", (socket: Socket) => {
    total++;
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  return {
    get open() {
      return sockets.size;
    },
    get total() {
      return total;
    },
    sockets,
  };
}
