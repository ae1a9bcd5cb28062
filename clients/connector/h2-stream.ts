import { type ClientHttp2Stream, constants, type IncomingHttpHeaders, type OutgoingHttpHeaders } from "node:http2";
import { type Header, ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { endToEndHeaders, headersFromObject, toFlatList, toNodeHeaders } from "../../core/headers.js";
import type { Logger } from "../../core/logger.js";
import { createPausingWriter } from "../../core/exchange/pausing-writer.js";
import { cancelOnReset } from "./cancel-on-reset.js";
import type { TargetRequest } from "./target-request.js";

const { NGHTTP2_CANCEL, NGHTTP2_FLAG_END_STREAM, NGHTTP2_REFUSED_STREAM } = constants;

/** The request's HTTP/2 head: pseudo-headers from the target and the exchange, then its end-to-end headers. */
export function requestHeaders(req: TargetRequest): OutgoingHttpHeaders {
  const url = new URL(req.target.origin);
  // The target's Host setting arrives as a "host" header; HTTP/2 carries it as :authority.
  const host = req.headers.find((h) => h.name === "host")?.value;
  return {
    ...toNodeHeaders(req.headers.filter((h) => h.name !== "host")),
    ":method": req.head.method,
    ":path": req.path,
    ":scheme": url.protocol === "https:" ? "https" : "http",
    ":authority": host ?? url.host,
  };
}

/**
 * Carries one exchange over an open HTTP/2 stream, both directions at once
 * (gRPC's bidi calls need the response while the request body still flows).
 * Each direction moves only as fast as its reader: the request body pauses
 * while the stream's send window is full, and the stream pauses while the
 * exchange has no credit, so the connector never holds more than the windows.
 * `deadline` (performance.now() time) bounds the wait for the response head.
 */
export function carryOverStream(stream: ClientHttp2Stream, req: TargetRequest, deadline: number, log: Logger): void {
  const { ex, head } = req;
  let started = false;
  let ended = false;
  let trailers: string[] | undefined;

  const timer = setTimeout(() => {
    if (started) return;
    stream.close(NGHTTP2_CANCEL);
    ex.reset(ResetCode.DEADLINE_EXCEEDED, `target "${head.target}" did not respond in time`);
  }, Math.max(0, deadline - performance.now()));
  // The relay reset the exchange (client gone, its deadline passed): cancel the target's call too.
  // A gRPC server sees RST_STREAM(CANCEL) and aborts the handler.
  const cancel = () => {
    clearTimeout(timer);
    if (!stream.closed) stream.close(NGHTTP2_CANCEL);
  };
  cancelOnReset(ex, cancel);

  if (!head.endStream) sendBody(stream, req);

  onHeaders(stream, "response", (headers, flags, raw) => {
    clearTimeout(timer);
    started = true;
    ex.sendResponseHead({
      $typeName: "ferry.tunnel.v1.ResponseHead",
      status: Number(headers[":status"]),
      headers: req.decorate(endToEndHeaders(raw)),
      // END_STREAM on the head: no body follows. This is how gRPC answers
      // "trailers-only" (an error before any message): grpc-status is in this head.
      endStream: (flags & NGHTTP2_FLAG_END_STREAM) !== 0,
    });
  });
  onHeaders(stream, "trailers", (_headers, _flags, raw) => {
    trailers = raw;
  });
  // A write that fails: the exchange is over, and a paused stream would hold its window on the session.
  const writer = createPausingWriter(ex, stream, cancel);
  stream.on("data", writer.write);
  stream.once("end", () => {
    ended = true;
    // A paused stream still ends once its last chunk is read: that chunk may be waiting for credit.
    writer.afterWrite(() => ex.end(trailers ? endToEndHeaders(trailers) : []));
  });
  stream.on("error", () => {}); // 'close' follows and decides
  stream.once("close", () => {
    clearTimeout(timer);
    if (ended || ex.isReset || ex.isClosed) return;
    const code = stream.rstCode;
    log.warn({ target: head.target, rstCode: code, started }, "target HTTP/2 stream closed before the response was complete");
    if (started) return ex.reset(ResetCode.TARGET_ERROR, `target "${head.target}" failed while sending its response`);
    // REFUSED_STREAM: the target did not process it (it is shutting down, GOAWAY); a client may retry.
    if (code === NGHTTP2_REFUSED_STREAM) return ex.reset(ResetCode.TARGET_UNREACHABLE, `target "${head.target}" refused the request`);
    ex.reset(ResetCode.TARGET_ERROR, `target "${head.target}" failed before responding`);
  });
}

/**
 * Listens for a head or trailers with the raw field list, which keeps repeated
 * fields apart (the headers object joins them with ", "). Node passes it as a
 * third argument its type definitions leave out; without it, the object serves.
 */
function onHeaders(
  stream: ClientHttp2Stream,
  event: "response" | "trailers",
  listener: (headers: IncomingHttpHeaders, flags: number, raw: string[]) => void,
): void {
  stream.on(event, (headers: IncomingHttpHeaders, flags: number, raw?: string[]) => {
    listener(headers, flags, raw ?? toFlatList(headersFromObject(headers)));
  });
}

/**
 * Streams the exchange's request body into the HTTP/2 stream, pausing the
 * exchange while the stream's window is full. The exchange's trailers go out
 * as HTTP/2 trailers (the stream was opened with waitForTrailers).
 */
function sendBody(stream: ClientHttp2Stream, req: TargetRequest): void {
  const { ex } = req;
  const body = ex.body;
  let requestTrailers: Header[] = [];
  body.on("data", (chunk: Buffer) => {
    if (stream.destroyed || stream.writableEnded) return;
    if (!stream.write(chunk)) body.pause();
  });
  stream.on("drain", () => body.resume());
  body.once("end", () => {
    // The body ends only after the exchange's End arrived, so its trailers are known by now.
    ex.trailers.then(
      (t) => {
        requestTrailers = t;
        if (!stream.destroyed) stream.end();
      },
      () => {},
    );
  });
  stream.once("wantTrailers", () => {
    try {
      stream.sendTrailers(toNodeHeaders(requestTrailers));
    } catch {
      stream.sendTrailers({}); // trailers HTTP/2 cannot carry (a pseudo-header, a per-hop field) are dropped
    }
  });
  // The target stopped reading (it answered early, or reset the stream): give the rest of the body up,
  // which tells the relay to stop the upload once the answer is through.
  stream.once("close", () => body.destroy());
}
