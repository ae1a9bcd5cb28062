import { type IncomingMessage, type OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { type ErrorKind, FerryError, HTTP_STATUS } from "../../core/errors.js";
import { encodeGrpcMessage, GrpcStatus } from "./grpc-status.js";
import { ExchangeReset } from "../../core/exchange/exchange.js";

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

/** The gRPC status a gRPC client gets for each kind of Ferry failure. */
const GRPC_CODE: Record<ErrorKind, number> = {
  invalid_argument: GrpcStatus.INVALID_ARGUMENT,
  unauthenticated: GrpcStatus.UNAUTHENTICATED,
  permission_denied: GrpcStatus.PERMISSION_DENIED,
  // No such tenant or target: to a gRPC client, the service is not there.
  not_found: GrpcStatus.UNIMPLEMENTED,
  already_exists: GrpcStatus.ALREADY_EXISTS,
  failed_precondition: GrpcStatus.FAILED_PRECONDITION,
  too_large: GrpcStatus.RESOURCE_EXHAUSTED,
  resource_exhausted: GrpcStatus.RESOURCE_EXHAUSTED,
  internal: GrpcStatus.INTERNAL,
  bad_gateway: GrpcStatus.UNAVAILABLE,
  unavailable: GrpcStatus.UNAVAILABLE,
  deadline_exceeded: GrpcStatus.DEADLINE_EXCEEDED,
};

/**
 * Writes `{"error": {"code", "message"}}` with the status of the error's kind;
 * to a gRPC or gRPC-Web client, a trailers-only gRPC status instead (an HTTP
 * 504 would reach it as UNAVAILABLE, not DEADLINE_EXCEEDED). Never throws:
 * it is the last thing done for a failed request, and a response that cannot
 * take an answer any more is broken instead.
 */
export function sendError(res: NodeResponse, err: FerryError): void {
  try {
    writeError(res, err);
  } catch {
    res.destroy();
  }
}

/**
 * Answers of the relay itself are data, never documents: no sniffing, and a
 * browser that renders one anyway (a frame, a window opened by another
 * tenant's page on the same origin) gives it an opaque origin and no frame.
 */
const ERROR_HEADERS = {
  "content-type": "application/json",
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "content-security-policy": "sandbox; frame-ancestors 'none'",
};

function writeError(res: NodeResponse, err: FerryError): void {
  if (res.headersSent) {
    // Too late for a status: break the response so the client cannot take it for complete.
    res.destroy(err);
    return;
  }
  const contentType = res.req?.headers["content-type"];
  if (contentType?.startsWith("application/grpc")) {
    return respondHeadOnly(res, 200, {
      "content-type": contentType,
      "grpc-status": String(GRPC_CODE[err.kind]),
      "grpc-message": encodeGrpcMessage(`${err.code}: ${err.message}`),
    });
  }
  const body = JSON.stringify({ error: { code: err.code, message: err.message } });
  const headers: Record<string, string | number> = { ...ERROR_HEADERS, "content-length": Buffer.byteLength(body) };
  if (err.extra.retryAfterSeconds !== undefined) headers["retry-after"] = err.extra.retryAfterSeconds;
  if (err.extra.signIn !== undefined) headers.location = err.extra.signIn;
  res.writeHead(err.extra.signIn !== undefined ? 302 : HTTP_STATUS[err.kind], headers);
  res.end(body);
}

/** 405 for a path that only reads (GET and HEAD): the relay's own static answers (JWKS, the console). */
export function readOnlyPath(req: NodeRequest, res: NodeResponse, path: string): boolean {
  if (req.method === "GET" || req.method === "HEAD") return true;
  const body = JSON.stringify({ error: { code: "method_not_allowed", message: `${path} answers GET and HEAD only` } });
  res.writeHead(405, { ...ERROR_HEADERS, allow: "GET, HEAD", "content-length": Buffer.byteLength(body) });
  res.end(body);
  return false;
}

/**
 * A response without a body. On HTTP/2 it is one HEADERS frame that ends the
 * stream: Node's compatibility response would add an empty DATA frame, and a
 * trailers-only gRPC answer must not have one.
 */
export function respondHeadOnly(res: NodeResponse, status: number, headers: OutgoingHttpHeaders): void {
  if ("stream" in res) {
    res.statusCode = status;
    if (!res.stream.destroyed) res.stream.respond({ ...res.getHeaders(), ...headers, ":status": status }, { endStream: true });
    return;
  }
  res.writeHead(status, headers);
  res.end();
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
