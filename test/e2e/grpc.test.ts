import { randomBytes } from "node:crypto";
import { connect as http2Connect, constants } from "node:http2";
import { type AddressInfo, createServer as createNetServer } from "node:net";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import {
  type ClientDuplexStream,
  type ClientReadableStream,
  type ClientWritableStream,
  credentials,
  Metadata,
  type ServiceError,
  status as GrpcCode,
} from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { grpcClientConstructor } from "../helpers/grpc-client.js";
import type { Connector } from "../../clients/connector/connector.js";
import {
  type BidiRequest,
  BidiRequestSchema,
  type BidiResponse,
  type ClientStreamRequest,
  ClientStreamRequestSchema,
  type ClientStreamResponse,
  type EchoRequest,
  EchoRequestSchema,
  type EchoResponse,
  EchoService,
  type ServerStreamRequest,
  ServerStreamRequestSchema,
  type ServerStreamResponse,
} from "../../gen/ferry/testing/v1/echo_service_pb.js";
import { makeTestPki, type TestPki } from "../helpers/certs.js";
import { type GrpcTarget, startGrpcTarget } from "../helpers/grpc-target.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { type FerryProcess, startConnectorProcess } from "../helpers/processes.js";
import { until } from "../helpers/wait.js";

const MiB = 1024 * 1024;

let relay: TestRelay;
/** connect-node on node:http2. */
let target: GrpcTarget;
/** @grpc/grpc-js, which answers errors trailers-only. */
let jsTarget: GrpcTarget;
/** Announces SETTINGS_MAX_CONCURRENT_STREAMS = 2. */
let narrowTarget: GrpcTarget;
/** A port nothing listens on. */
let downUrl: string;
let connector: Connector;

beforeAll(async () => {
  target = await startGrpcTarget();
  jsTarget = await startGrpcTarget({ server: "grpc-js" });
  narrowTarget = await startGrpcTarget({ maxConcurrentStreams: 2 });
  downUrl = await closedPortUrl();
  // baseDomain: grpc-js cannot put a path prefix in front of its method paths, so it reaches
  // the target by host: grpc.acme.relay.test.
  relay = await startTestRelay({ baseDomain: "relay.test" });
  const key = await relay.tenantWithKey("acme");
  connector = await startTestConnector(relay.url, key, { grpc: target.url, grpcjs: jsTarget.url, narrow: narrowTarget.url, down: downUrl });
});

afterAll(async () => {
  await connector?.stop();
  await relay?.close();
  await target?.close();
  await jsTarget?.close();
  await narrowTarget?.close();
});

/** An h2c:// URL on a port that was just free (the listener is closed again at once). */
async function closedPortUrl(): Promise<string> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return `h2c://127.0.0.1:${port}`;
}

/** connect-node's gRPC client (HTTP/2, h2c): path routing under /relay/acme/{target}. */
function connectClient(targetName = "grpc"): Client<typeof EchoService> {
  return createClient(EchoService, createGrpcTransport({ baseUrl: `${relay.url}/relay/acme/${targetName}` }));
}

/** The grpc-js stub as the generic client constructor builds it (methods named by localName). */
interface EchoStub {
  echo(req: EchoRequest, md: Metadata, opts: { deadline?: number }, cb: (err: ServiceError | null, res?: EchoResponse) => void): {
    on(event: "metadata", cb: (md: Metadata) => void): void;
    on(event: "status", cb: (s: { metadata: Metadata }) => void): void;
  };
  serverStream(req: ServerStreamRequest, md?: Metadata): ClientReadableStream<ServerStreamResponse>;
  clientStream(cb: (err: ServiceError | null, res?: ClientStreamResponse) => void): ClientWritableStream<ClientStreamRequest>;
  bidi(): ClientDuplexStream<BidiRequest, BidiResponse>;
  close(): void;
}

/** A grpc-js client to the relay's address, naming {target}.{tenant}.relay.test as :authority (host routing). */
function grpcJsClient(targetName = "grpc", tenant = "acme"): EchoStub {
  const Ctor = grpcClientConstructor(EchoService);
  return new Ctor(new URL(relay.url).host, credentials.createInsecure(), {
    "grpc.default_authority": `${targetName}.${tenant}.relay.test`,
  }) as unknown as EchoStub;
}

/** One Echo call with grpc-js, with the response headers and trailers it got. */
function unary(client: EchoStub, req: MessageInitShape<typeof EchoRequestSchema>, md = new Metadata(), deadline?: number) {
  let headers: Metadata | undefined;
  let trailers: Metadata | undefined;
  return new Promise<{ res?: EchoResponse; err?: ServiceError; headers?: Metadata; trailers?: Metadata }>((resolve) => {
    const call = client.echo(create(EchoRequestSchema, req), md, { deadline }, (err, res) =>
      // 'status' comes after the callback; wait a turn so the trailers are in.
      setImmediate(() => resolve({ res, err: err ?? undefined, headers, trailers })),
    );
    call.on("metadata", (m) => (headers = m));
    call.on("status", (s) => (trailers = s.metadata));
  });
}

describe("gRPC through the relay with connect-node (path routing)", () => {
  it("unary: the response, response metadata and trailers arrive; request metadata reaches the target", async () => {
    const client = connectClient();
    let headers: Headers | undefined;
    let trailers: Headers | undefined;
    const res = await client.echo(
      { message: "hello", payload: new Uint8Array([1, 2, 3]) },
      { headers: { "x-ping": "p-1" }, onHeader: (h) => (headers = h), onTrailer: (t) => (trailers = t) },
    );
    expect(res.message).toBe("hello");
    expect([...res.payload]).toEqual([1, 2, 3]);
    expect(headers?.get("x-pong")).toBe("p-1");
    expect(trailers?.get("x-pong-trailer")).toBe("p-1");
    const seen = target.seen.findLast((s) => s.headers["x-ping"] === "p-1");
    // The target sees the service path, HTTP/2, and its own authority (the connector's Host default).
    expect(seen).toMatchObject({ method: "Echo", httpVersion: "2.0", authority: new URL(target.url).host });
    expect(seen?.headers["content-type"]).toBe("application/grpc+proto");
    expect(seen?.headers.te).toBe("trailers");
  });

  it("server streaming: every message arrives in order", async () => {
    const got: number[] = [];
    for await (const m of connectClient().serverStream({ message: "s", count: 50 })) got.push(m.index);
    expect(got).toEqual([...Array(50).keys()]);
  });

  it("client streaming: every message reaches the target", async () => {
    async function* requests() {
      for (let i = 0; i < 20; i++) yield { message: `m${i}` };
    }
    const res = await connectClient().clientStream(requests());
    expect(res.messages).toEqual([...Array(20).keys()].map((i) => `m${i}`));
  });

  it("bidi: each answer arrives before the next request is sent (full duplex)", async () => {
    const requests = createWritableIterable<{ message: string }>();
    const responses = connectClient().bidi(requests)[Symbol.asyncIterator]();
    for (let i = 0; i < 5; i++) {
      await requests.write({ message: `b${i}` });
      const next = await responses.next();
      expect(next.value).toMatchObject({ message: `b${i}`, index: i });
    }
    requests.close();
    expect((await responses.next()).done).toBe(true);
  });

  it("an error keeps its status code, message and trailers", async () => {
    const err = await connectClient()
      .echo({ failCode: Code.PermissionDenied, failMessage: "nope: not you" }, { headers: { "x-ping": "p-err" } })
      .catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.PermissionDenied);
    expect((err as ConnectError).rawMessage).toBe("nope: not you");
    expect((err as ConnectError).metadata.get("x-fail-detail")).toBe("on purpose");
    expect((err as ConnectError).metadata.get("x-pong-trailer")).toBe("p-err");
  });

  it("an error after streamed messages arrives after them", async () => {
    const got: number[] = [];
    const err = await (async () => {
      for await (const m of connectClient().serverStream({ message: "s", count: 3, failCode: Code.ResourceExhausted })) got.push(m.index);
    })().catch((e: unknown) => ConnectError.from(e));
    expect(got).toEqual([0, 1, 2]);
    expect((err as ConnectError).code).toBe(Code.ResourceExhausted);
  });

  it("a deadline fails the call with DEADLINE_EXCEEDED and cancels the target's call", async () => {
    const before = target.cancelled.filter((c) => c.method === "Echo").length;
    const started = performance.now();
    const err = await connectClient()
      .echo({ message: "slow", delayMs: 10_000 }, { timeoutMs: 300, headers: { "x-ping": "p-deadline" } })
      .catch((e: unknown) => ConnectError.from(e));
    expect((err as ConnectError).code).toBe(Code.DeadlineExceeded);
    expect(performance.now() - started).toBeLessThan(5_000);
    // The deadline travelled to the target (grpc-timeout), and the on-prem handler was aborted.
    const seen = target.seen.findLast((s) => s.headers["x-ping"] === "p-deadline");
    expect(Number(/^(\d+)m$/.exec(String(seen?.headers["grpc-timeout"]))?.[1])).toBeLessThanOrEqual(300);
    await until(() => target.cancelled.filter((c) => c.method === "Echo").length > before);
  });

  it("cancelling a server stream at the client cancels the target's call", async () => {
    const before = target.cancelled.filter((c) => c.method === "ServerStream").length;
    const abort = new AbortController();
    const got: number[] = [];
    const err = await (async () => {
      for await (const m of connectClient().serverStream({ message: "c", count: 100_000, intervalMs: 5 }, { signal: abort.signal })) {
        got.push(m.index);
        if (got.length === 3) abort.abort();
      }
    })().catch((e: unknown) => ConnectError.from(e));
    expect((err as ConnectError).code).toBe(Code.Canceled);
    expect(got).toEqual([0, 1, 2]);
    await until(() => target.cancelled.filter((c) => c.method === "ServerStream").length > before);
    expect(target.cancelled.findLast((c) => c.method === "ServerStream")?.code).toBe(Code.Canceled);
  });

  it("carries a 4 MiB message each way", async () => {
    const payload = randomBytes(4 * MiB - 64);
    const res = await connectClient().echo({ message: "big", payload });
    expect(Buffer.from(res.payload).equals(payload)).toBe(true);
  });

  it("carries many concurrent calls", async () => {
    const client = connectClient();
    const results = await Promise.all(
      [...Array(300).keys()].map(async (i) => {
        if (i % 3 === 0) return (await client.echo({ message: `u${i}` })).message;
        if (i % 3 === 1) {
          const got: string[] = [];
          for await (const m of client.serverStream({ message: `s${i}`, count: 3 })) got.push(m.message);
          return got.join(",");
        }
        async function* requests() {
          yield { message: `c${i}` };
          yield { message: `c${i}` };
        }
        return (await client.clientStream(requests())).messages.join(",");
      }),
    );
    results.forEach((r, i) => {
      if (i % 3 === 0) expect(r).toBe(`u${i}`);
      else if (i % 3 === 1) expect(r).toBe(`s${i},s${i},s${i}`);
      else expect(r).toBe(`c${i},c${i}`);
    });
  });
});

describe("gRPC through the relay with @grpc/grpc-js (host routing)", () => {
  it("unary with metadata both ways", async () => {
    const client = grpcJsClient();
    const md = new Metadata();
    md.set("x-ping", "js-1");
    const { res, err, headers, trailers } = await unary(client, { message: "hi js" }, md);
    client.close();
    expect(err).toBeUndefined();
    expect(res?.message).toBe("hi js");
    expect(headers?.get("x-pong")).toEqual(["js-1"]);
    expect(trailers?.get("x-pong-trailer")).toEqual(["js-1"]);
    expect(target.seen.findLast((s) => s.headers["x-ping"] === "js-1")).toMatchObject({ method: "Echo", httpVersion: "2.0" });
  });

  it("server streaming", async () => {
    const client = grpcJsClient();
    const got: number[] = [];
    await new Promise<void>((resolve, reject) => {
      const call = client.serverStream(create(ServerStreamRequestSchema, { message: "js", count: 20 }));
      call.on("data", (m: ServerStreamResponse) => got.push(m.index));
      call.on("end", resolve);
      call.on("error", reject);
    });
    client.close();
    expect(got).toEqual([...Array(20).keys()]);
  });

  it("client streaming", async () => {
    const client = grpcJsClient();
    const res = await new Promise<ClientStreamResponse | undefined>((resolve, reject) => {
      const call = client.clientStream((err, r) => (err ? reject(err) : resolve(r)));
      for (let i = 0; i < 10; i++) call.write(create(ClientStreamRequestSchema, { message: `js${i}` }));
      call.end();
    });
    client.close();
    expect(res?.messages).toEqual([...Array(10).keys()].map((i) => `js${i}`));
  });

  it("bidi, one answer per request before the next is sent", async () => {
    const client = grpcJsClient();
    const call = client.bidi();
    const answers: BidiResponse[] = [];
    let wake: (() => void) | undefined;
    call.on("data", (m: BidiResponse) => {
      answers.push(m);
      wake?.();
    });
    const ended = new Promise<void>((resolve, reject) => {
      call.on("end", resolve);
      call.on("error", reject);
    });
    for (let i = 0; i < 5; i++) {
      call.write(create(BidiRequestSchema, { message: `jb${i}` }));
      const answered = new Promise<void>((resolve) => (answers.length > i ? resolve() : (wake = resolve)));
      await Promise.race([answered, ended]);
      expect(answers[i]).toMatchObject({ message: `jb${i}`, index: i });
    }
    call.end();
    await ended;
    client.close();
    expect(answers).toHaveLength(5);
  });

  it("an error keeps its code, details and trailers", async () => {
    const client = grpcJsClient();
    const md = new Metadata();
    md.set("x-ping", "js-err");
    const { err } = await unary(client, { failCode: GrpcCode.NOT_FOUND, failMessage: "no such thing" }, md);
    client.close();
    expect(err?.code).toBe(GrpcCode.NOT_FOUND);
    expect(err?.details).toBe("no such thing");
    expect(err?.metadata.get("x-fail-detail")).toEqual(["on purpose"]);
    expect(err?.metadata.get("x-pong-trailer")).toEqual(["js-err"]);
  });

  it("a deadline fails with DEADLINE_EXCEEDED and the target's call is cancelled", async () => {
    const before = target.cancelled.filter((c) => c.method === "Echo").length;
    const client = grpcJsClient();
    const md = new Metadata();
    md.set("x-ping", "js-deadline");
    const { err } = await unary(client, { message: "slow", delayMs: 10_000 }, md, Date.now() + 300);
    client.close();
    expect(err?.code).toBe(GrpcCode.DEADLINE_EXCEEDED);
    expect(target.seen.findLast((s) => s.headers["x-ping"] === "js-deadline")?.headers["grpc-timeout"]).toBeDefined();
    await until(() => target.cancelled.filter((c) => c.method === "Echo").length > before);
  });

  it("cancelling a server stream cancels the target's call", async () => {
    const before = target.cancelled.filter((c) => c.method === "ServerStream").length;
    const client = grpcJsClient();
    const call = client.serverStream(create(ServerStreamRequestSchema, { message: "x", count: 100_000, intervalMs: 5 }));
    const err = await new Promise<ServiceError>((resolve) => {
      let n = 0;
      call.on("data", () => {
        if (++n === 3) call.cancel();
      });
      call.on("error", resolve);
    });
    client.close();
    expect(err.code).toBe(GrpcCode.CANCELLED);
    await until(() => target.cancelled.filter((c) => c.method === "ServerStream").length > before);
  });

  it("a 1 MiB message each way", async () => {
    const client = grpcJsClient();
    const payload = randomBytes(MiB);
    const { res, err } = await unary(client, { payload });
    client.close();
    expect(err).toBeUndefined();
    expect(Buffer.from(res!.payload).equals(payload)).toBe(true);
  });
});

describe("a @grpc/grpc-js target", () => {
  // Node's compatibility response would send HEADERS, then an empty DATA frame with END_STREAM; strict gRPC
  // clients want the status in the one HEADERS frame that ends the stream.
  it("a trailers-only error stays one HEADERS frame with END_STREAM and grpc-status", async () => {
    const session = http2Connect(relay.url);
    try {
      const msg = toBinary(EchoRequestSchema, create(EchoRequestSchema, { failCode: GrpcCode.UNAVAILABLE, failMessage: "down" }));
      const envelope = Buffer.alloc(5 + msg.length);
      envelope.writeUInt32BE(msg.length, 1);
      envelope.set(msg, 5);
      const head = await new Promise<{ headers: Record<string, unknown>; endStream: boolean }>((resolve, reject) => {
        const stream = session.request({
          ":method": "POST",
          ":path": "/relay/acme/grpcjs/ferry.testing.v1.EchoService/Echo",
          "content-type": "application/grpc+proto",
          te: "trailers",
        });
        stream.on("response", (headers, flags) => resolve({ headers, endStream: (flags & constants.NGHTTP2_FLAG_END_STREAM) !== 0 }));
        stream.on("error", reject);
        stream.resume();
        stream.end(envelope);
      });
      expect(head.headers).toMatchObject({ ":status": 200, "grpc-status": String(GrpcCode.UNAVAILABLE), "grpc-message": "down" });
      expect(head.endStream).toBe(true);
    } finally {
      session.close();
    }
  });

  it("a trailers-only error reaches connect-node and grpc-js clients with its code, message and metadata", async () => {
    const err = await connectClient("grpcjs")
      .echo({ failCode: Code.FailedPrecondition, failMessage: "not yet" }, { headers: { "x-ping": "to-1" } })
      .catch((e: unknown) => ConnectError.from(e));
    expect(err).toMatchObject({ code: Code.FailedPrecondition, rawMessage: "not yet" });
    expect((err as ConnectError).metadata.get("x-fail-detail")).toBe("on purpose");

    const client = grpcJsClient("grpcjs");
    const md = new Metadata();
    md.set("x-ping", "to-2");
    const { err: jsErr } = await unary(client, { failCode: GrpcCode.ABORTED, failMessage: "try again" }, md);
    client.close();
    expect(jsErr).toMatchObject({ code: GrpcCode.ABORTED, details: "try again" });
    expect(jsErr?.metadata.get("x-fail-detail")).toEqual(["on purpose"]);
    expect(jsErr?.metadata.get("x-pong-trailer")).toEqual(["to-2"]);
  });

  it("grpc-js to grpc-js: unary with metadata both ways, and bidi", async () => {
    const client = grpcJsClient("grpcjs");
    const md = new Metadata();
    md.set("x-ping", "jj-1");
    const { res, headers, trailers } = await unary(client, { message: "js to js" }, md);
    expect(res?.message).toBe("js to js");
    expect(headers?.get("x-pong")).toEqual(["jj-1"]);
    expect(trailers?.get("x-pong-trailer")).toEqual(["jj-1"]);
    const call = client.bidi();
    const answers: string[] = [];
    call.on("data", (m: BidiResponse) => answers.push(`${m.index}:${m.message}`));
    const ended = new Promise<void>((resolve, reject) => {
      call.on("end", resolve);
      call.on("error", reject);
    });
    for (const m of ["a", "b", "c"]) call.write(create(BidiRequestSchema, { message: m }));
    call.end();
    await ended;
    client.close();
    expect(answers).toEqual(["0:a", "1:b", "2:c"]);
  });

  it("a client cancel and a deadline both cancel the grpc-js handler", async () => {
    const before = jsTarget.cancelled.length;
    const abort = new AbortController();
    const err = await (async () => {
      for await (const m of connectClient("grpcjs").serverStream({ message: "c", count: 100_000, intervalMs: 5 }, { signal: abort.signal })) {
        if (m.index === 2) abort.abort();
      }
    })().catch((e: unknown) => ConnectError.from(e));
    expect((err as ConnectError).code).toBe(Code.Canceled);
    await until(() => jsTarget.cancelled.length > before);
    expect(jsTarget.cancelled.at(-1)).toMatchObject({ method: "ServerStream", code: Code.Canceled });

    const client = grpcJsClient("grpcjs");
    const { err: late } = await unary(client, { message: "slow", delayMs: 10_000 }, new Metadata(), Date.now() + 300);
    client.close();
    expect(late?.code).toBe(GrpcCode.DEADLINE_EXCEEDED);
    await until(() => jsTarget.cancelled.length > before + 1);
    expect(jsTarget.cancelled.at(-1)?.method).toBe("Echo");
    expect(jsTarget.inProgress()).toBe(0);
  });
});

describe("sessions to targets", () => {
  it("opens another session when the target's concurrent-stream limit is reached", async () => {
    const client = connectClient("narrow");
    const answers = await Promise.all([...Array(6).keys()].map((i) => client.echo({ message: `n${i}`, delayMs: 200 })));
    expect(answers.map((a) => a.message)).toEqual([...Array(6).keys()].map((i) => `n${i}`));
    // Two streams per session: six calls at once need three sessions.
    expect(narrowTarget.connections()).toBeGreaterThanOrEqual(3);
  });

  it("a target's GOAWAY moves later calls to a new session", async () => {
    const client = connectClient("narrow");
    expect((await client.echo({ message: "before" })).message).toBe("before");
    const before = narrowTarget.connections();
    await narrowTarget.goAway();
    expect((await client.echo({ message: "after" })).message).toBe("after");
    expect(narrowTarget.connections()).toBe(before + 1);
  });

  it("an unreachable target fails calls as unavailable, saying why", async () => {
    const err = await connectClient("down")
      .echo({ message: "anyone?" })
      .catch((e: unknown) => ConnectError.from(e));
    expect((err as ConnectError).code).toBe(Code.Unavailable);
    expect((err as ConnectError).rawMessage).toBe('target_unreachable: target "down" refused the connection');
    const session = http2Connect(relay.url);
    try {
      const reply = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const stream = session.request({ ":method": "POST", ":path": "/relay/acme/down/echo" });
        let status = 0;
        let body = "";
        stream.setEncoding("utf8");
        stream.on("response", (h) => (status = Number(h[":status"])));
        stream.on("data", (c: string) => (body += c));
        stream.on("end", () => resolve({ status, body }));
        stream.on("error", reject);
        stream.end("x");
      });
      expect(reply.status).toBe(502);
      expect(JSON.parse(reply.body)).toMatchObject({ error: { code: "target_unreachable", message: 'target "down" refused the connection' } });
    } finally {
      session.close();
    }
  });
});

describe("the relay's own errors, to gRPC clients", () => {
  it("arrive as gRPC statuses, trailers-only, with the Ferry error code in the message", async () => {
    const nowhere = await connectClient("nothere")
      .echo({ message: "x" })
      .catch((e: unknown) => ConnectError.from(e));
    expect(nowhere).toMatchObject({ code: Code.Unimplemented, rawMessage: expect.stringMatching(/^target_not_found: /) });

    const noTenant = await unary(grpcJsClient("grpc", "nobody"), { message: "x" });
    expect(noTenant.err).toMatchObject({ code: GrpcCode.UNIMPLEMENTED, details: expect.stringMatching(/^tenant_not_found: /) });

    await relay.admin.createTenant({ name: "offline" });
    const offline = await unary(grpcJsClient("grpc", "offline"), { message: "x" });
    expect(offline.err).toMatchObject({ code: GrpcCode.UNAVAILABLE, details: expect.stringMatching(/^no_connector: /) });
  });

  it("a relay-side timeout is DEADLINE_EXCEEDED, not UNAVAILABLE", async () => {
    await relay.admin.updateTenant({ tenant: { name: "acme", requestTimeout: { seconds: 0n, nanos: 300_000_000 } }, updateMask: { paths: ["request_timeout"] } });
    try {
      const slow = await unary(grpcJsClient(), { message: "x", delayMs: 5_000 });
      expect(slow.err).toMatchObject({ code: GrpcCode.DEADLINE_EXCEEDED, details: expect.stringMatching(/^timeout: /) });
    } finally {
      await relay.admin.updateTenant({ tenant: { name: "acme" }, updateMask: { paths: ["request_timeout"] } });
    }
  });
});

describe("plain HTTP/2 to an h2c target", () => {
  it("round-trips a request body over HTTP/2 end to end", async () => {
    const session = http2Connect(relay.url);
    try {
      const body = randomBytes(3 * MiB);
      const reply = await new Promise<{ status: number; version: unknown; body: Buffer }>((resolve, reject) => {
        const stream = session.request({ ":method": "POST", ":path": "/relay/acme/grpc/echo", "content-type": "application/x-test" });
        const chunks: Buffer[] = [];
        let head: Record<string, unknown> = {};
        stream.on("response", (h) => (head = h));
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("end", () => resolve({ status: Number(head[":status"]), version: head["x-http-version"], body: Buffer.concat(chunks) }));
        stream.on("error", reject);
        stream.end(body);
      });
      expect(reply.status).toBe(200);
      expect(reply.version).toBe("2.0"); // the target was reached over HTTP/2, not HTTP/1.1
      expect(reply.body.equals(body)).toBe(true);
    } finally {
      session.close();
    }
  });

  it("a target that resets its stream mid-response breaks the client's response", async () => {
    const session = http2Connect(relay.url);
    try {
      const outcome = await new Promise<{ status: number; bytes: number; rstCode: number | undefined }>((resolve) => {
        const stream = session.request({ ":method": "GET", ":path": "/relay/acme/grpc/reset" }, { endStream: true });
        let status = 0;
        let bytes = 0;
        stream.on("response", (h) => (status = Number(h[":status"])));
        stream.on("data", (c: Buffer) => (bytes += c.length));
        stream.on("error", () => {});
        stream.on("close", () => resolve({ status, bytes, rstCode: stream.rstCode }));
      });
      // The head and the first bytes went through; then the stream is reset, not ended as if complete.
      expect(outcome.status).toBe(200);
      expect(outcome.bytes).toBeLessThanOrEqual(1000);
      expect(outcome.rstCode).not.toBe(constants.NGHTTP2_NO_ERROR);
    } finally {
      session.close();
    }
  });
});

describe("https targets (TLS, ALPN)", () => {
  let pki: TestPki;
  let h2Target: GrpcTarget;
  let h1Target: GrpcTarget;
  /** Its certificate comes from a CA the connector does not trust. */
  let strangerTarget: GrpcTarget;
  let tlsRelay: TestRelay;
  let tlsConnector: FerryProcess;

  beforeAll(async () => {
    pki = makeTestPki();
    h2Target = await startGrpcTarget({ tls: { cert: pki.cert, key: pki.key } });
    h1Target = await startGrpcTarget({ tls: { cert: pki.cert, key: pki.key }, http1Only: true });
    const otherPki = makeTestPki();
    strangerTarget = await startGrpcTarget({ tls: { cert: otherPki.cert, key: otherPki.key } });
    tlsRelay = await startTestRelay();
    const key = await tlsRelay.tenantWithKey("acme");
    // A connector process: it trusts the test CA the standard Node way, which takes effect at start-up only.
    tlsConnector = startConnectorProcess(
      tlsRelay.url,
      key,
      { secure: h2Target.url, legacy: h1Target.url, stranger: strangerTarget.url },
      { env: { NODE_EXTRA_CA_CERTS: pki.ca } },
    );
    await tlsConnector.waitForCount("tunnel connected", 2);
  });

  afterAll(async () => {
    await tlsConnector?.stop();
    await tlsRelay?.close();
    await h2Target?.close();
    await h1Target?.close();
    await strangerTarget?.close();
  });

  /** A plain HTTP/2 POST through the relay (h2c). */
  async function post(path: string, body: string): Promise<{ status: number; version: unknown; body: string }> {
    const session = http2Connect(tlsRelay.url);
    try {
      return await new Promise((resolve, reject) => {
        const stream = session.request({ ":method": "POST", ":path": path });
        let text = "";
        let head: Record<string, unknown> = {};
        stream.setEncoding("utf8");
        stream.on("response", (h) => (head = h));
        stream.on("data", (c: string) => (text += c));
        stream.on("end", () => resolve({ status: Number(head[":status"]), version: head["x-http-version"], body: text }));
        stream.on("error", reject);
        stream.end(body);
      });
    } finally {
      session.close();
    }
  }

  it("reaches a target that offers h2 by ALPN over HTTP/2", async () => {
    const client = createClient(EchoService, createGrpcTransport({ baseUrl: `${tlsRelay.url}/relay/acme/secure` }));
    let trailers: Headers | undefined;
    const res = await client.echo({ message: "over tls" }, { headers: { "x-ping": "tls-1" }, onTrailer: (t) => (trailers = t) });
    expect(res.message).toBe("over tls");
    expect(trailers?.get("x-pong-trailer")).toBe("tls-1");
    expect(h2Target.seen.findLast((s) => s.headers["x-ping"] === "tls-1")?.httpVersion).toBe("2.0");
  });

  it("falls back to HTTP/1.1 for a target that offers only http/1.1", async () => {
    expect(await post("/relay/acme/legacy/echo", "hello, old friend")).toEqual({ status: 200, version: "1.1", body: "hello, old friend" });
    // gRPC works too, if the server accepts it over HTTP/1.1: trailers travel after a chunked body.
    const client = createClient(EchoService, createGrpcTransport({ baseUrl: `${tlsRelay.url}/relay/acme/legacy` }));
    let trailers: Headers | undefined;
    const res = await client.echo({ message: "over h1" }, { headers: { "x-ping": "h1-1" }, onTrailer: (t) => (trailers = t) });
    expect(res.message).toBe("over h1");
    expect(trailers?.get("x-pong-trailer")).toBe("h1-1");
    expect(h1Target.seen.findLast((s) => s.headers["x-ping"] === "h1-1")?.httpVersion).toBe("1.1");
  });

  it("refuses a target whose certificate it does not trust, saying so", async () => {
    const reply = await post("/relay/acme/stranger/echo", "x");
    expect(reply.status).toBe(502);
    expect(JSON.parse(reply.body)).toMatchObject({ error: { code: "target_unreachable", message: 'target "stranger" failed the TLS handshake' } });
    expect(strangerTarget.seen).toHaveLength(0);
  });
});
