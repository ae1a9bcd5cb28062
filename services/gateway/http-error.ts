import { type IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { FerryError, HTTP_STATUS } from "../../clients/sdk/errors.js";
import { ExchangeReset } from "../../clients/sdk/exchange.js";

export type NodeRequest = IncomingMessage | Http2ServerRequest;
export type NodeResponse = ServerResponse | Http2ServerResponse;

/** Maps any failure on the gateway path to the one error type the HTTP edge knows. */
export function toFerryError(err: unknown): FerryError {
  if (err instanceof FerryError) return err;
  if (err instanceof ExchangeReset) return fromReset(err);
  return new FerryError("internal", "internal", "internal error", { cause: err });
}

function fromReset(reset: ExchangeReset): FerryError {
  const m = reset.message;
  switch (reset.code) {
    case ResetCode.DEADLINE_EXCEEDED:
      return new FerryError("deadline_exceeded", "timeout", m);
    case ResetCode.TARGET_UNREACHABLE:
      return new FerryError("bad_gateway", "target_unreachable", m);
    case ResetCode.TARGET_ERROR:
      return new FerryError("bad_gateway", "target_error", m);
    case ResetCode.REFUSED:
      return new FerryError("unavailable", "connector_refused", m, { retryAfterSeconds: 1 });
    case ResetCode.UNAVAILABLE:
      return new FerryError("bad_gateway", "connector_lost", m);
    case ResetCode.CANCELLED:
      return new FerryError("bad_gateway", "cancelled", m);
    default:
      return new FerryError("bad_gateway", "tunnel_error", m);
  }
}

/** Writes `{"error": {"code", "message"}}` with the status of the error's kind. */
export function sendError(res: NodeResponse, err: FerryError): void {
  if (res.headersSent) {
    // Too late for a status: break the response so the client cannot take it for complete.
    res.destroy(err);
    return;
  }
  const body = JSON.stringify({ error: { code: err.code, message: err.message } });
  const headers: Record<string, string | number> = {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    "cache-control": "no-store",
  };
  if (err.extra.retryAfterSeconds !== undefined) headers["retry-after"] = err.extra.retryAfterSeconds;
  res.writeHead(HTTP_STATUS[err.kind], headers);
  res.end(body);
}

/**
 * A response written straight to a socket Node's HTTP server has let go of
 * (an Upgrade request): errors and the 101 use the same code as every other
 * answer. Anything but a 101 is the connection's last answer.
 */
export function responseOnSocket(req: IncomingMessage, socket: Duplex): ServerResponse {
  const res = new ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket as Socket);
  res.once("finish", () => {
    if (res.statusCode !== 101) socket.end();
  });
  socket.on("error", () => socket.destroy());
  return res;
}
