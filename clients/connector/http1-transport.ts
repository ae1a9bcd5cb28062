import type { Agent, Dispatcher } from "undici";
import { ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { msFromDuration } from "../../core/duration.js";
import { headersFromObject, toFlatList } from "../../core/headers.js";
import type { Logger } from "../../core/logger.js";
import { createPausingWriter, type PausingWriter } from "../../core/exchange/pausing-writer.js";
import { cancelOnReset } from "./cancel-on-reset.js";
import { describe, failTarget } from "./target-errors.js";
import type { TargetRequest } from "./target-request.js";

const DEFAULT_TIMEOUT_MS = 100_000;

/** Sends one exchange to its target over HTTP/1.1 with undici. */
export function forwardHttp1(agent: Agent, req: TargetRequest, log: Logger): void {
  const { target, ex, head } = req;
  if (ex.isReset) return; // reset while an HTTP/2 attempt found the target speaks HTTP/1.1: nothing to start
  agent.dispatch(
    {
      origin: target.origin,
      path: req.path,
      method: head.method as Dispatcher.HttpMethod,
      headers: toFlatList(req.headers),
      body: head.endStream ? null : ex.body,
      headersTimeout: msFromDuration(head.timeout) || DEFAULT_TIMEOUT_MS,
      // Long downloads and event streams may pause for as long as they like.
      bodyTimeout: 0,
    },
    responder(req, log),
  );
}

/**
 * Carries undici's answer into the exchange. undici pushes the body; when the
 * exchange has no credit for a chunk, undici is paused until it has, so a slow
 * client holds the target back instead of the connector buffering.
 *
 * Every way the exchange ends lets go of the target's connection at once: a
 * reset aborts the request (undici closes the connection), whether it comes
 * before undici started the request (it may wait for a connection: it is
 * aborted the moment undici hands it over, before a byte is sent), during the
 * head, or while undici is paused on credit; a write that fails aborts too,
 * so undici is never left paused.
 */
export function responder(req: TargetRequest, log: Logger): Dispatcher.DispatchHandler {
  const { ex, head } = req;
  let controller: Dispatcher.DispatchController | undefined;
  let writer: PausingWriter | undefined;
  let started = false;
  let failed = false;
  // Before the dispatch: undici gives us its controller only once it starts the request.
  cancelOnReset(ex, (reset) => controller?.abort(reset));
  return {
    onRequestStart(c) {
      controller = c;
      writer = createPausingWriter(ex, c, (err) => c.abort(err));
      if (ex.isReset) c.abort(ex.isReset);
    },
    onResponseStart(_controller, statusCode, headers) {
      if (statusCode < 200) return; // 1xx interim answers stay on this hop
      started = true;
      const bodyless = head.method === "HEAD" || statusCode === 204 || statusCode === 304;
      ex.sendResponseHead({
        $typeName: "ferry.tunnel.v1.ResponseHead",
        status: statusCode,
        headers: req.decorate(headersFromObject(headers)),
        endStream: bodyless,
      });
    },
    onResponseData(_controller, chunk) {
      writer!.write(chunk);
    },
    onResponseEnd(_controller, trailers) {
      ex.end(headersFromObject(trailers));
    },
    onResponseError(_controller, err) {
      if (ex.isReset || failed) return; // the relay reset it, or we already did
      failed = true;
      if (started) {
        log.warn({ target: head.target, err: describe(err) }, "target response failed mid-body");
        return ex.reset(ResetCode.TARGET_ERROR, `target "${head.target}" failed while sending its response`);
      }
      failTarget(ex, head, err, log);
    },
  };
}
