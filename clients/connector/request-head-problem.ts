import type { RequestHead } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { MAX_WINDOW, MIN_WINDOW } from "../../core/exchange/protocol.js";

const METHOD = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$/;
/** Longest timeout a relay may set: what a Node timer can wait (about 24.8 days). */
const MAX_TIMEOUT_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

/**
 * What is wrong with a RequestHead from the relay, or undefined. Checks the
 * fields nothing after it checks: the method (an HTTP token), the response
 * window (the protocol's range) and the timeout (one a timer can keep). The
 * path is checked by the forwarder, header names and values by the transports
 * (undici, node:http2), which refuse what they cannot send; none of it may
 * throw past its exchange.
 */
export function requestHeadProblem(head: RequestHead): string | undefined {
  if (!METHOD.test(head.method)) return "the method is not an HTTP token";
  const w = head.responseWindow;
  if (w !== 0 && (w < MIN_WINDOW || w > MAX_WINDOW)) return `the response window must be between ${MIN_WINDOW} and ${MAX_WINDOW}`;
  const t = head.timeout;
  if (t && (t.seconds < 0n || t.seconds > BigInt(MAX_TIMEOUT_SECONDS) || t.nanos < 0 || t.nanos >= 1e9)) return "the timeout is out of range";
  return undefined;
}
