import { readFileSync } from "node:fs";
import { createServer as createHttpsServer } from "node:https";
import { createSecureServer, createServer as createH2cServer, constants as h2constants, type Http2Session } from "node:http2";
import type { AddressInfo, Server, Socket } from "node:net";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { type ConnectNodeAdapterOptions, connectNodeAdapter } from "@connectrpc/connect-node";
import {
  Metadata,
  type sendUnaryData,
  Server as GrpcServer,
  ServerCredentials,
  type ServerDuplexStream,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type StatusObject,
} from "@grpc/grpc-js";
import { grpcServiceDefinition } from "./grpc-client.js";
import {
  type BidiRequest,
  type BidiResponse,
  BidiResponseSchema,
  type ClientStreamRequest,
  type ClientStreamResponse,
  ClientStreamResponseSchema,
  type EchoRequest,
  type EchoResponse,
  EchoResponseSchema,
  EchoService,
  type ServerStreamRequest,
  type ServerStreamResponse,
  ServerStreamResponseSchema,
} from "../../gen/ferry/testing/v1/echo_service_pb.js";
import { until } from "./wait.js";

/** A request handler for node:http and node:http2 alike, as connect-node takes it. */
type NodeHandler = NonNullable<ConnectNodeAdapterOptions["fallback"]>;

/** What the target saw of one call (or plain HTTP request). */
export interface SeenCall {
  /** gRPC method name ("Echo"), or the path of a plain request. */
  method: string;
  /** "2.0" or "1.1". */
  httpVersion: string;
  /** :authority (HTTP/2) or Host (HTTP/1.1). */
  authority: string;
  headers: Record<string, string | string[] | undefined>;
}

/** A call whose handler was aborted before it finished: the peer reset the stream, or its deadline passed. */
export interface CancelledCall {
  method: string;
  /** The Connect code the abort carried (Canceled, DeadlineExceeded...), if any. */
  code: Code | undefined;
}

export interface GrpcTarget {
  /** The connector target URL: h2c://127.0.0.1:PORT, or https://127.0.0.1:PORT with `tls`. */
  url: string;
  seen: SeenCall[];
  cancelled: CancelledCall[];
  /** Calls whose handler is running now. */
  inProgress(): number;
  /** Connections accepted so far (connect-node server only). */
  connections(): number;
  /** Sends GOAWAY on every HTTP/2 connection (as a server going idle or shutting down does); resolves once they are closed. */
  goAway(): Promise<void>;
  close(): Promise<void>;
}

export interface GrpcTargetOptions {
  /** The gRPC server: connect-node (default) or @grpc/grpc-js (h2c only, no plain HTTP endpoints). */
  server?: "connect-node" | "grpc-js";
  /** Serve TLS with this certificate (PEM files). */
  tls?: { cert: string; key: string };
  /** With `tls`: offer only http/1.1 by ALPN (a target that cannot speak HTTP/2). */
  http1Only?: boolean;
  /** SETTINGS_MAX_CONCURRENT_STREAMS the server announces (connect-node server only). */
  maxConcurrentStreams?: number;
}

/** What the target has recorded so far; both server implementations fill it in. */
interface Recorder {
  seen: SeenCall[];
  cancelled: CancelledCall[];
  running: number;
}

/**
 * An on-premises gRPC server for the tests: ferry.testing.v1.EchoService on
 * HTTP/2, served by connect-node on node:http2 (h2c by prior knowledge, or TLS
 * with ALPN; plus the plain HTTP endpoints of plainHttp), or by a
 * @grpc/grpc-js server (h2c), which answers errors the way
 * many gRPC servers do: "trailers-only", one HEADERS frame with END_STREAM.
 * Every call reflects an `x-ping` request header as the `x-pong` response
 * header and the `x-pong-trailer` trailer, and every handler aborted mid-call
 * is recorded (cancellation tests).
 */
export async function startGrpcTarget(options: GrpcTargetOptions = {}): Promise<GrpcTarget> {
  const record: Recorder = { seen: [], cancelled: [], running: 0 };
  const served = options.server === "grpc-js" ? await serveGrpcJs(record) : await serveConnectNode(record, options);
  return { ...served, seen: record.seen, cancelled: record.cancelled, inProgress: () => record.running };
}

type Served = Pick<GrpcTarget, "url" | "close" | "connections" | "goAway">;

async function serveConnectNode(record: Recorder, options: GrpcTargetOptions): Promise<Served> {
  /** Runs a handler body, recording it when it is aborted before it returns. */
  const track = (method: string, ctx: HandlerContext): (() => void) => {
    record.running++;
    let done = false;
    const onAbort = () => {
      if (!done) record.cancelled.push({ method, code: ConnectError.from(ctx.signal.reason).code });
    };
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    const ping = ctx.requestHeader.get("x-ping");
    if (ping !== null) {
      ctx.responseHeader.set("x-pong", ping);
      ctx.responseTrailer.set("x-pong-trailer", ping);
    }
    return () => {
      done = true;
      record.running--;
      ctx.signal.removeEventListener("abort", onAbort);
    };
  };

  const routes = (router: ConnectRouter) =>
    router.service(EchoService, {
      async echo(req, ctx) {
        const finish = track("Echo", ctx);
        try {
 if (req.delayMs > 0) await delay(req.delayMs, ctx.signal);
          if (req.failCode !== 0) throw new ConnectError(req.failMessage, req.failCode as Code, { "x-fail-detail": "on purpose" });
          return { message: req.message, payload: req.payload };
        } finally {
          finish();
        }
      },
      async *serverStream(req, ctx) {
        const finish = track("ServerStream", ctx);
        try {
          for (let index = 0; index < req.count; index++) {
            yield { message: req.message, index };
            if (req.intervalMs > 0) await delay(req.intervalMs, ctx.signal);
          }
          if (req.failCode !== 0) throw new ConnectError("failed after the stream", req.failCode as Code);
        } finally {
          finish();
        }
      },
      async clientStream(reqs, ctx) {
        const finish = track("ClientStream", ctx);
        try {
          const messages: string[] = [];
          for await (const r of reqs) messages.push(r.message);
          return { messages };
        } finally {
          finish();
        }
      },
      async *bidi(reqs, ctx) {
        const finish = track("Bidi", ctx);
        try {
          let index = 0;
          for await (const r of reqs) yield { message: r.message, index: index++ };
        } finally {
          finish();
        }
      },
    });

  const adapter = connectNodeAdapter({ routes, fallback: plainHttp });
  const handler: NodeHandler = (req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0]!;
    record.seen.push({
      method: path.startsWith(`/${EchoService.typeName}/`) ? path.slice(EchoService.typeName.length + 2) : path,
      httpVersion: req.httpVersion,
      authority: String(("authority" in req ? req.authority : undefined) ?? req.headers.host ?? ""),
      headers: { ...req.headers },
    });
    adapter(req, res);
  };

  let server: Server;
  const settings = options.maxConcurrentStreams === undefined ? {} : { maxConcurrentStreams: options.maxConcurrentStreams };
  const tls = options.tls && { cert: readFileSync(options.tls.cert), key: readFileSync(options.tls.key) };
  if (tls && options.http1Only) {
    server = createHttpsServer({ ...tls, ALPNProtocols: ["http/1.1"] }, handler);
  } else if (tls) {
    server = createSecureServer({ ...tls, allowHTTP1: true, settings }, handler);
  } else {
    server = createH2cServer({ settings }, handler);
  }
  let accepted = 0;
  const sockets = new Set<Socket>();
  server.on(tls ? "secureConnection" : "connection", (socket: Socket) => {
    accepted++;
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  const sessions = new Set<Http2Session>();
  server.on("session", (session: Http2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${tls ? "https" : "h2c"}://127.0.0.1:${port}`,
    connections: () => accepted,
    async goAway() {
      const closing = [...sessions];
      await Promise.all(
        closing.map((session) => {
          const closed = new Promise((resolve) => session.once("close", resolve));
          session.close();
          return closed;
        }),
      );
      // GOAWAY is out and the sockets closed on our side: the connector learns it on its next read.
      await until(() => sockets.size === 0);
    },
    async close() {
      const closed = new Promise((resolve) => server.close(resolve));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}

/** What track() needs of a grpc-js server call, whatever its kind. */
interface ServerSurfaceCall {
  readonly metadata: Metadata;
  getHost(): string;
  sendMetadata(md: Metadata): void;
  once(event: "cancelled", listener: (reason: string) => void): unknown;
}

/** The same service on a @grpc/grpc-js server, h2c only. */
async function serveGrpcJs(record: Recorder): Promise<Served> {
  /** Records the call; the returned function marks it finished (a cancellation after that is not one). */
  const track = (method: string, call: ServerSurfaceCall): { pong: Metadata; finish(): void } => {
    record.running++;
    record.seen.push({ method, httpVersion: "2.0", authority: call.getHost(), headers: metadataObject(call.metadata) });
    let done = false;
    call.once("cancelled", (reason: string) => {
      if (!done) record.cancelled.push({ method, code: /deadline/i.test(reason) ? Code.DeadlineExceeded : Code.Canceled });
    });
    const pong = new Metadata();
    const ping = call.metadata.get("x-ping")[0];
    if (ping !== undefined) {
      const header = new Metadata();
      header.set("x-pong", String(ping));
      call.sendMetadata(header);
      pong.set("x-pong-trailer", String(ping));
    }
    return {
      pong,
      finish() {
        if (done) return;
        done = true;
        record.running--;
      },
    };
  };
  const failure = (code: number, details: string, trailers: Metadata): Partial<StatusObject> => {
    const metadata = trailers.clone();
    metadata.set("x-fail-detail", "on purpose");
    return { code, details, metadata };
  };

  const server = new GrpcServer();
  server.addService(grpcServiceDefinition(EchoService), {
    echo(call: ServerUnaryCall<EchoRequest, EchoResponse>, callback: sendUnaryData<EchoResponse>) {
      const t = track("Echo", call);
      const req = call.request;
      const answer = () => {
        t.finish();
        if (req.failCode !== 0) return callback(failure(req.failCode, req.failMessage, t.pong), null);
        callback(null, create(EchoResponseSchema, { message: req.message, payload: req.payload }), t.pong);
      };
      if (req.delayMs === 0) return answer();
      const timer = setTimeout(answer, req.delayMs);
      call.once("cancelled", () => {
        clearTimeout(timer);
        t.finish();
      });
    },
    serverStream(call: ServerWritableStream<ServerStreamRequest, ServerStreamResponse>) {
      const t = track("ServerStream", call);
      const req = call.request;
      let index = 0;
      let timer: NodeJS.Timeout | undefined;
      call.once("cancelled", () => {
        clearTimeout(timer);
        t.finish();
      });
      const next = () => {
        if (call.cancelled) return;
        if (index < req.count) {
          call.write(create(ServerStreamResponseSchema, { message: req.message, index: index++ }));
          timer = setTimeout(next, req.intervalMs);
          return;
        }
        t.finish();
        if (req.failCode !== 0) return void call.emit("error", failure(req.failCode, "failed after the stream", t.pong));
        call.end(t.pong);
      };
      next();
    },
    clientStream(call: ServerReadableStream<ClientStreamRequest, ClientStreamResponse>, callback: sendUnaryData<ClientStreamResponse>) {
      const t = track("ClientStream", call);
      const messages: string[] = [];
      call.on("data", (r: ClientStreamRequest) => messages.push(r.message));
      call.once("cancelled", t.finish);
      call.once("end", () => {
        t.finish();
        callback(null, create(ClientStreamResponseSchema, { messages }), t.pong);
      });
    },
    bidi(call: ServerDuplexStream<BidiRequest, BidiResponse>) {
      const t = track("Bidi", call);
      let index = 0;
      call.on("data", (r: BidiRequest) => call.write(create(BidiResponseSchema, { message: r.message, index: index++ })));
      call.once("cancelled", t.finish);
      call.once("end", () => {
        t.finish();
        call.end(t.pong);
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const unsupported = () => {
    throw new Error("not supported by the grpc-js test target");
  };
  return {
    url: `h2c://127.0.0.1:${port}`,
    connections: unsupported,
    goAway: unsupported,
    close: () =>
      new Promise<void>((resolve) => {
        server.forceShutdown();
        resolve();
      }),
  };
}

function metadataObject(md: Metadata): SeenCall["headers"] {
  const out: SeenCall["headers"] = {};
  for (const [name, value] of Object.entries(md.getMap())) out[name] = String(value);
  return out;
}

/**
 * Plain HTTP: /echo answers with the request body and the protocol version it
 * arrived over; /reset (HTTP/2) sends a head and some body, then resets the
 * stream with INTERNAL_ERROR, as a server failing mid-response does.
 */
const plainHttp: NodeHandler = (req, res) => {
  const path = (req.url ?? "").split("?", 1)[0];
  if (path === "/reset" && "stream" in res) {
    res.writeHead(200, { "content-type": "application/octet-stream" });
    res.write(Buffer.alloc(1000, 1), () => res.stream.close(h2constants.NGHTTP2_INTERNAL_ERROR));
    return;
  }
  if (path !== "/echo") {
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found");
    return;
  }
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    res.writeHead(200, {
      "content-type": req.headers["content-type"] ?? "application/octet-stream",
      "x-http-version": req.httpVersion,
      "content-length": String(body.length),
    });
    res.end(body);
  });
};

/** Waits `ms` (the service's delay_ms / interval_ms), or rejects when the call is aborted. */
function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
