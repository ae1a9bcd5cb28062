import { Duplex } from "node:stream";

/**
 * Two connected in-memory sockets: what one writes, the other reads (Node 22
 * has stream.duplexPair; Node 20 does not). Destroying either end destroys
 * both, as closing a TCP connection would. No backpressure across the pair:
 * use it only where the reader keeps reading.
 */
export function duplexPair(): [Duplex, Duplex] {
  let ends: [Duplex, Duplex];
  const make = (other: () => Duplex) =>
    new Duplex({
      read() {},
      write(chunk, _encoding, callback) {
        other().push(chunk);
        callback();
      },
      final(callback) {
        other().push(null);
        callback();
      },
      destroy(err, callback) {
        const peer = other();
        if (!peer.destroyed) peer.destroy();
        callback(err);
      },
    });
  ends = [make(() => ends[1]), make(() => ends[0])];
  return ends;
}
