import { ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { msFromDuration } from "../../core/duration.js";
import type { Logger } from "../../core/logger.js";
import { createH2SessionPool } from "./h2-session-pool.js";
import { carryOverStream, requestHeaders } from "./h2-stream.js";
import { describe, failTarget } from "./target-errors.js";
import type { TargetRequest } from "./target-request.js";

export interface H2Transport {
  /**
   * Sends the request over HTTP/2, or calls `http1` when the target turns out to speak only HTTP/1.1.
   * Resolves once the stream is open (or the exchange failed or was reset meanwhile).
   */
  forward(req: TargetRequest, http1: () => void): Promise<void>;
  close(): Promise<void>;
}

const DEFAULT_TIMEOUT_MS = 100_000;

/**
 * Sends exchanges to h2c:// and https:// targets over HTTP/2 (node:http2),
 * which gRPC needs: trailers, full duplex, RST_STREAM to cancel a call. An
 * https:// target that picks HTTP/1.1 by ALPN is handed to the HTTP/1.1 path.
 */
export function createH2Transport(log: Logger): H2Transport {
  const pool = createH2SessionPool(log);
  return {
    forward,
    close: () => pool.close(),
  };

  async function forward(req: TargetRequest, http1: () => void): Promise<void> {
    const { ex, head, target } = req;
    // The time limit covers connecting too, as undici's headersTimeout does on the HTTP/1.1 path.
    const deadline = performance.now() + (msFromDuration(head.timeout) || DEFAULT_TIMEOUT_MS);
    // A reset while connecting has nothing to cancel yet: it is checked once there is a slot.
    let slot;
    try {
      slot = await pool.acquire(target);
    } catch (err) {
      if (!ex.isReset) failTarget(ex, head, err, log);
      return;
    }
    if (ex.isReset) {
      if (slot !== "http1") slot.release(); // the session stays for others, and idles out if nobody comes
      return;
    }
    if (slot === "http1") return http1();
    let stream;
    try {
      stream = slot.request(requestHeaders(req), { endStream: head.endStream, waitForTrailers: !head.endStream });
    } catch (err) {
      // Headers HTTP/2 refuses (a repeated single-value field, an invalid value): the request, not the target, is at fault.
      log.warn({ target: head.target, err: describe(err) }, "request refused by the HTTP/2 client");
      return ex.reset(ResetCode.PROTOCOL_ERROR, `the request cannot be sent to target "${head.target}" over HTTP/2: ${(err as Error).message}`);
    }
    carryOverStream(stream, req, deadline, log);
  }
}
