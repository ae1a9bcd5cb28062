import type { BodySink } from "../../core/exchange/exchange.js";

/**
 * A BodySink whose callbacks never throw: they run on a peer's frames (from
 * the tunnel's data callback, or a NATS message in a cluster), where a throw
 * would reach the transport and every other exchange on it. The first throw
 * goes to `failed`, once, and the sink ignores everything after it (data
 * pauses delivery), so only this exchange ends.
 */
export function guardedSink(sink: BodySink, failed: (err: unknown) => void): BodySink {
  let dead = false;
  const fail = (err: unknown) => {
    if (dead) return;
    dead = true;
    try {
      failed(err);
    } catch {
      // nothing left to tell
    }
  };
  return {
    data(chunk) {
      if (dead) return false;
      try {
        return sink.data(chunk);
      } catch (err) {
        fail(err);
        return false;
      }
    },
    end(trailers) {
      if (dead) return;
      try {
        sink.end(trailers);
      } catch (err) {
        fail(err);
      }
    },
    error(reset) {
      if (dead) return;
      try {
        sink.error(reset);
      } catch (err) {
        fail(err);
      }
    },
  };
}
