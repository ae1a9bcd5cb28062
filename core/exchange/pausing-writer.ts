import type { Exchange } from "./exchange.js";

/** A body source that can stop pushing chunks for a while: a Node stream, undici's dispatch controller. */
export interface Pausable {
  pause(): void;
  resume(): void;
}

export interface PausingWriter {
  /**
   * Sends `chunk` into the exchange: at once while there is credit (the common
   * case, without a promise or a closure), otherwise the source is paused
   * until the exchange took the chunk. Needs no `this`: pass it as a listener.
   */
  write(chunk: Uint8Array): void;
  /** Runs `then` once no chunk waits for credit: now, or after the waiting one was sent (or failed). */
  afterWrite(then: () => void): void;
}

/**
 * Pushes a source's chunks into `ex`, holding the source back while the
 * exchange has no credit, so nothing is buffered beyond the windows. A write
 * that fails (the exchange is over) goes to `failed` instead of resuming; the
 * source stays paused unless `failed` resumes or ends it. Made once per body:
 * the closures it needs are built here, not per chunk.
 */
export function createPausingWriter(ex: Exchange, source: Pausable, failed: (err: Error) => void): PausingWriter {
  /** The chunk waiting for credit, if any. */
  let writing: Promise<void> | undefined;
  const sent = () => {
    writing = undefined;
    source.resume();
  };
  const gaveUp = (err: Error) => {
    writing = undefined;
    failed(err);
  };
  return {
    write(chunk) {
      if (ex.writeNow(chunk)) return;
      source.pause(); // no more chunks until the exchange took this one
      writing = ex.write(chunk).then(sent, gaveUp);
    },
    afterWrite(then) {
      if (writing) void writing.then(then);
      else then();
    },
  };
}
