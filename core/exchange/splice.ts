import type { Duplex } from "node:stream";
import { ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import type { Exchange } from "./exchange.js";
import { createPausingWriter } from "./pausing-writer.js";

export interface SpliceOptions {
  /** Reset message when the socket is dropped before it ended (no FIN): names who dropped it. */
  dropped: string;
  /** Bytes read from the socket (sent into the exchange). */
  onRead?(bytes: number): void;
  /** Bytes written to the socket (received from the exchange). */
  onWrite?(bytes: number): void;
  /** After one direction ended, how long the other may stay open (a peer that never closes is cut). */
  lingerMs?: number;
}

const DEFAULT_LINGER_MS = 30_000;

/**
 * Joins an upgraded connection (a WebSocket, or any protocol after a 101) and
 * an exchange: the socket's bytes go out as Data, the exchange's Data is
 * written to the socket, unparsed. Both ways use the exchange's credit: a
 * socket that does not drain holds the peer to its window, and a peer without
 * credit pauses the socket, so a slow reader anywhere bounds memory
 * everywhere. Each direction ends on its own (FIN becomes End, End becomes
 * FIN), so a closing handshake completes both ways before anything is torn
 * down. Resolves once the socket is closed.
 */
export function spliceSocket(ex: Exchange, socket: Duplex, opts: SpliceOptions): Promise<void> {
  let ended = false;
  const writer = createPausingWriter(ex, socket, () => socket.destroy());
  let linger: NodeJS.Timeout | undefined;
  const startLinger = () => {
    linger ??= setTimeout(() => socket.destroy(), opts.lingerMs ?? DEFAULT_LINGER_MS);
    linger.unref();
  };
  const endOurSide = () => {
    if (ended) return;
    ended = true;
    startLinger();
    writer.afterWrite(() => ex.end());
  };
  ex.onReset = () => socket.destroy();

  // Socket to exchange.
  socket.on("data", (chunk: Buffer) => {
    opts.onRead?.(chunk.length);
    writer.write(chunk);
  });
  socket.once("end", endOurSide);
  socket.on("error", () => {}); // 'close' follows and decides

  // Exchange to socket.
  socket.on("drain", () => ex.resume());
  ex.consume({
    data: (chunk) => {
      if (socket.destroyed) return true;
      opts.onWrite?.(chunk.byteLength);
      return socket.write(chunk);
    },
    end: () => {
      startLinger();
      socket.end();
    },
    error: () => socket.destroy(),
  });
  socket.resume();

  return new Promise((resolve) => {
    socket.once("close", () => {
      clearTimeout(linger);
      if (!ex.isClosed && !ex.isReset) {
        if (socket.readableEnded) endOurSide();
        else ex.reset(ResetCode.CANCELLED, opts.dropped);
      }
      resolve();
    });
  });
}
