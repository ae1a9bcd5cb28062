import type { BlockList } from "node:net";
import type { Http2ServerRequest } from "node:http2";
import { type Header, type RequestHead, ResetCode, type ResponseHead } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { durationFromMs, formatDuration } from "../../clients/sdk/duration.js";
import { FerryError } from "../../clients/sdk/errors.js";
import { Exchange } from "../../clients/sdk/exchange.js";
import { endToEndHeaders, header, toFlatList, toNodeHeaders } from "../../clients/sdk/headers.js";
import { newExchangeId } from "../../clients/sdk/ids.js";
import type { Logger } from "../../clients/sdk/logger.js";
import type { ExchangeBus } from "../bus/exchange-bus.js";
import type { Catalog } from "../state/catalog.js";
import { FORWARDING_HEADERS, forwardingHeaders } from "./forwarded.js";
import { type NodeRequest, type NodeResponse, sendError, toFerryError } from "./http-error.js";
import { parseRelayPath, type RelayPath } from "./relay-path.js";

export interface GatewayOptions {
  catalog: Catalog;
  bus: ExchangeBus;
  log: Logger;
  /** Time the target has to start its response. */
  requestTimeoutMs: number;
  /** Receive window granted to the connector for each response body. */
  responseWindow: number;
  trustedProxies: BlockList | undefined;
  isDraining(): boolean;
}

export interface Gateway {
  handle(req: NodeRequest, res: NodeResponse): void;
  /** Exchanges in progress. */
  readonly active: number;
  /** Resolves when no exchange is in progress. */
  idle(): Promise<void>;
}

/**
 * The HTTP gateway for plain clients: turns a request to
 * /relay/{tenant}/{target}/... into an exchange, streams the request body to
 * the connector and the response back, with nothing buffered beyond the
 * flow-control windows.
 */
export function createGateway(opts: GatewayOptions): Gateway {
  let active = 0;
  let idleWaiters: Array<() => void> = [];

  const done = () => {
    active--;
    if (active === 0) {
      const waiters = idleWaiters;
      idleWaiters = [];
      for (const w of waiters) w();
    }
  };

  return {
    handle(req, res) {
      active++;
      serve(opts, req, res)
        .catch((err) => {
          const error = toFerryError(err);
          if (error.kind === "internal") opts.log.error({ err }, "gateway failure");
          sendError(res, error);
        })
        .finally(done);
    },
    get active() {
      return active;
    },
    idle() {
      return active === 0 ? Promise.resolve() : new Promise((resolve) => idleWaiters.push(resolve));
    },
  };
}

async function serve(opts: GatewayOptions, req: NodeRequest, res: NodeResponse): Promise<void> {
  if (opts.isDraining()) {
    // HTTP/1.1 clients should not reuse this connection; HTTP/2 has no such header (GOAWAY follows).
    if (!("stream" in req)) res.setHeader("connection", "close");
    throw new FerryError("unavailable", "draining", "the relay is shutting down; retry", { retryAfterSeconds: 1 });
  }
  const where = parseRelayPath(req.url ?? "/");
  opts.catalog.requireTenant(where.tenant);

  const id = newExchangeId();
  let exchange: Exchange | undefined;
  const route = await opts.bus.open(where.tenant, where.target, id, (frame) => exchange?.receive(frame));
  const ex = new Exchange({
    id,
    send: route.send,
    sendWindow: route.requestWindow,
    receiveWindow: opts.responseWindow,
    maxFrameSize: route.maxFrameSize,
    transportReady: route.ready,
  });
  exchange = ex;

  const head = requestHead(opts, req, where);
  let finished = false;
  // A client that goes away cancels the exchange, and with it the target's request.
  res.once("close", () => {
    if (!finished) ex.reset(ResetCode.CANCELLED, "the client closed the connection");
  });
  const timer = setTimeout(
    () => ex.reset(ResetCode.DEADLINE_EXCEEDED, `the target did not respond within ${formatDuration(opts.requestTimeoutMs)}`),
    opts.requestTimeoutMs,
  );
  try {
    ex.sendRequestHead(head);
    if (!head.endStream) sendBody(req, ex);
    const response = (await ex.remoteHead) as ResponseHead;
    clearTimeout(timer);
    await sendResponse(res, ex, response);
    finished = true;
  } finally {
    clearTimeout(timer);
  }
}

function requestHead(opts: GatewayOptions, req: NodeRequest, where: RelayPath): RequestHead {
  const http2 = "stream" in req;
  const host = (http2 ? req.headers[":authority"] : req.headers.host) ?? "";
  const forwarded = forwardingHeaders(
    {
      remoteAddress: req.socket.remoteAddress ?? "",
      encrypted: "encrypted" in req.socket && req.socket.encrypted === true,
      host: String(host),
      incoming: {
        forwardedFor: single(req.headers["x-forwarded-for"]),
        proto: single(req.headers["x-forwarded-proto"]),
        host: single(req.headers["x-forwarded-host"]),
      },
      prefix: where.prefix,
    },
    opts.trustedProxies,
  );
  const headers = mergeCookies(endToEndHeaders(req.rawHeaders, { drop: FORWARDING_HEADERS }));
  headers.push(...forwarded.headers);
  return {
    $typeName: "ferry.tunnel.v1.RequestHead",
    target: where.target,
    method: req.method ?? "GET",
    path: where.path,
    query: where.query,
    headers,
    clientAddress: forwarded.clientAddress,
    timeout: durationFromMs(opts.requestTimeoutMs),
    upgrade: false,
    endStream: !hasBody(req),
    responseWindow: opts.responseWindow,
  };
}

/** Whether a request body follows its head. */
function hasBody(req: NodeRequest): boolean {
  if ("stream" in req) return !(req as Http2ServerRequest).stream.endAfterHeaders;
  const length = req.headers["content-length"];
  if (req.headers["transfer-encoding"] !== undefined) return true;
  return length !== undefined && length !== "0";
}

/** HTTP/2 clients may split Cookie into several fields; HTTP/1.1 targets want one (RFC 9113 §8.2.3). */
function mergeCookies(headers: Header[]): Header[] {
  const cookies = headers.filter((h) => h.name === "cookie");
  if (cookies.length < 2) return headers;
  const rest = headers.filter((h) => h.name !== "cookie");
  rest.push(header("cookie", cookies.map((c) => c.value).join("; ")));
  return rest;
}

/**
 * Streams the client's body into the exchange. Chunks go out synchronously
 * while there is credit; otherwise the client is paused until there is.
 */
function sendBody(req: NodeRequest, ex: Exchange): void {
  let complete = false;
  let dropping = false;
  const cancel = () => ex.reset(ResetCode.CANCELLED, "the client aborted the request body");
  req.on("data", (chunk: Buffer) => {
    if (dropping || ex.writeNow(chunk)) return;
    req.pause(); // 'data' and 'end' wait until the exchange took this chunk
    ex.write(chunk).then(
      () => req.resume(),
      () => {
        // The exchange is over (maybe after a complete early answer, which must still reach
        // the client): read the rest of the upload and drop it, never cut the connection here.
        dropping = true;
        req.resume();
      },
    );
  });
  req.once("end", () => {
    complete = true;
    ex.end();
  });
  // A write may be parked waiting for credit (the response may even be finished already), so
  // a client that goes away must cancel the exchange itself. `req.complete`: the whole body
  // arrived (close follows end); only a cut-off body cancels.
  req.once("close", () => {
    if (!complete && !req.complete) cancel();
  });
  req.once("error", cancel);
}

/** Writes the response head, then the body as it arrives, pausing the exchange while the client is slow. */
function sendResponse(res: NodeResponse, ex: Exchange, head: ResponseHead): Promise<void> {
  res.writeHead(head.status, toNodeHeaders(endToEndHeaders(toFlatList(head.headers))));
  if (head.endStream) {
    res.end();
    return Promise.resolve();
  }
  return new Promise((resolve, reject) => {
    const resume = () => ex.resume();
    res.on("drain", resume);
    ex.consume({
      data: (chunk) => (res as NodeJS.WritableStream).write(chunk),
      end: (trailers) => {
        res.off("drain", resume);
        if (trailers.length > 0) res.addTrailers(toNodeHeaders(trailers) as Record<string, string>);
        res.end();
        resolve();
      },
      error: (reset) => {
        res.off("drain", resume);
        reject(reset);
      },
    });
  });
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(", ") : value;
}
