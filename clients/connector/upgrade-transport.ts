import type { Agent, Dispatcher } from "undici";
import { ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { msFromDuration } from "../../core/duration.js";
import { headersFromObject, toFlatList } from "../../core/headers.js";
import type { Logger } from "../../core/logger.js";
import { spliceSocket } from "../../core/exchange/splice.js";
import { responder } from "./http1-transport.js";
import type { TargetRequest } from "./target-request.js";

const DEFAULT_TIMEOUT_MS = 100_000;

/**
 * Forwards an HTTP/1.1 Upgrade (WebSocket and friends). undici sends the
 * request and hands over the raw socket on 101; from then on the exchange
 * carries the upgraded protocol's bytes both ways, unparsed, with the same
 * credit windows as any body: a slow reader on either side holds back the
 * writer on the other, and nothing in between buffers beyond the windows.
 * Any other answer (a 401, a 404) is passed on as an ordinary response.
 */
export function forwardUpgrade(agent: Agent, req: TargetRequest, log: Logger): void {
  const { target, ex, head } = req;
  const protocol = req.headers.find((h) => h.name === "upgrade")?.value;
  if (!protocol) return ex.reset(ResetCode.PROTOCOL_ERROR, "an upgrade exchange without an Upgrade header");
  // undici writes Connection and Upgrade itself (and refuses them among the headers).
  const headers = req.headers.filter((h) => h.name !== "upgrade" && h.name !== "connection");
  const plain = responder(req, log);
  agent.dispatch(
    {
      origin: target.origin,
      path: req.path,
      method: head.method as Dispatcher.HttpMethod,
      headers: toFlatList(headers),
      upgrade: protocol,
      headersTimeout: msFromDuration(head.timeout) || DEFAULT_TIMEOUT_MS,
      bodyTimeout: 0,
    },
    {
      ...plain,
      onRequestUpgrade(_controller, statusCode, upgradeHeaders, socket) {
        ex.sendResponseHead({
          $typeName: "ferry.tunnel.v1.ResponseHead",
          status: statusCode,
          headers: req.decorate(headersFromObject(upgradeHeaders, { upgrade: true })),
          endStream: false,
        });
        void spliceSocket(ex, socket, { dropped: `target "${head.target}" dropped the upgraded connection` });
      },
      // Not upgraded: an ordinary answer, and the client's side carries nothing more worth reading.
      onResponseStart(controller, statusCode, responseHeaders, statusMessage) {
        if (statusCode >= 200) ex.body.resume();
        plain.onResponseStart?.(controller, statusCode, responseHeaders, statusMessage);
      },
    },
  );
}
