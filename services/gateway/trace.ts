import { randomHex } from "../../core/exchange/ids.js";

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Trace context for one exchange: what goes to the target and back to the client. */
export interface Trace {
  /** W3C traceparent for the target: the client's trace, with the relay as the new parent span. */
  traceparent: string;
  /** X-Request-Id: the client's when it sent a sane one, else the trace id. */
  requestId: string;
}

/**
 * Continues the client's W3C trace (https://www.w3.org/TR/trace-context/) or
 * starts one, so the relay hop shows up in the target's traces, and picks the
 * request id that logs, audit and the client's X-Request-Id share.
 */
export function traceFor(traceparent: string | undefined, requestId: string | undefined): Trace {
  const m = traceparent ? TRACEPARENT.exec(traceparent.trim()) : null;
  const traceId = m && !/^0+$/.test(m[1]!) && !/^0+$/.test(m[2]!) ? m[1]! : randomHex(16);
  const flags = m ? m[3]! : "00";
  return {
    traceparent: `00-${traceId}-${randomHex(8)}-${flags}`,
    requestId: requestId && REQUEST_ID.test(requestId) ? requestId : traceId,
  };
}
