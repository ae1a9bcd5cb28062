import { create } from "@bufbuild/protobuf";
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createH2Server, type Http2Server, type ServerHttp2Stream } from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { TargetSpec } from "../../clients/connector/connector-config.js";
import { createTargetForwarder, type TargetForwarder } from "../../clients/connector/target-forwarder.js";
import { Exchange } from "../../core/exchange/exchange.js";
import { newExchangeId } from "../../core/exchange/ids.js";
import { type Header, HeaderSchema, type RequestHead, RequestHeadSchema, ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { quietLog } from "../helpers/in-process.js";
import { type OpenConnections, trackConnections } from "../helpers/open-connections.js";
import { patternAt } from "../helpers/targets.js";
import { eventually, until } from "../helpers/wait.js";

// Every point at which an exchange can end, against the connector's forwarder and real
// targets: the target's connection (or stream, or upgraded socket) must be let go at once,
// and nothing may stay paused or waiting. The relay's end of each exchange is an Exchange
// joined to the connector's by an in-memory wire, so a reset lands exactly where the test
// puts it (the e2e storms are in connector-leaks.test.ts).
const KiB = 1024;
const MiB = 1024 * KiB;
/** The response window the relay side grants: small, so the connector runs out of credit early. */
const WINDOW = 64 * KiB;
/** More than the window and every socket buffer in between: a download that cannot finish while paused. */
const HUGE = 64 * MiB;

let h1: CountingTarget;
let h2: CountingH2Target;
let upgrades: UpgradeTarget;
let forwarder: TargetForwarder | undefined;

beforeAll(async () => {
  [h1, h2, upgrades] = await Promise.all([startCountingTarget(), startCountingH2Target(), startUpgradeTarget()]);
});

afterEach(async () => {
  // undici's Agent closes only once every request it holds is over: a request left paused would hang here.
  const closing = forwarder;
  forwarder = undefined;
  await closing?.close();
  // And once the connector is gone, no target holds a connection from it.
  const open = () => h1.connections.open + h2.connections.open + upgrades.connections.open;
  await eventually(() => open() === 0, `every target connection to close (open: ${open()})`);
});

afterAll(async () => {
  await Promise.all([h1?.close(), h2?.close(), upgrades?.close()]);
});

describe("HTTP/1.1 target: every way an exchange ends releases the connection", () => {
  it("reset before the dispatch: the target is never contacted", async () => {
    const created = countDispatches();
    const before = h1.connections.total;
    const x = start("app", "/bytes?size=1000");
    x.a.reset(ResetCode.CANCELLED, "client gone"); // same tick as the head: the same batch on a tunnel
    await until(() => x.b.isClosed);
    await turns(3);
    expect(created.count()).toBe(0);
    expect(h1.connections.total).toBe(before);
    created.stop();
  });

  it("reset between the dispatch and onRequestStart (while undici connects): nothing is sent", async () => {
    const seen = h1.requests;
    const x = start("app", "/bytes?size=1000", { onDispatch: (b) => b.reset(ResetCode.CANCELLED, "client gone") });
    await until(() => x.b.isClosed);
    await expectH1Released();
    expect(h1.requests).toBe(seen);
  });

  it("reset while waiting for the response head", async () => {
    const x = start("app", "/hang");
    await until(() => h1.busy === 1);
    x.a.reset(ResetCode.CANCELLED, "client gone");
    await expectH1Released();
  });

  it("reset after the response head", async () => {
    const x = start("app", "/head-then-hang");
    expect((await x.a.remoteHead).$typeName).toBe("ferry.tunnel.v1.ResponseHead");
    x.a.reset(ResetCode.CANCELLED, "client gone");
    await expectH1Released();
  });

  it("reset mid-body while undici is paused on credit", async () => {
    const x = start("app", `/bytes?size=${HUGE}`, { paused: true });
    await eventually(() => blocked(h1.connections) === 1, "the target to block on the connector");
    x.a.reset(ResetCode.CANCELLED, "client gone");
    await expectH1Released();
  });

  it("an early answer ends the upload", async () => {
    const x = start("app", "/early", { method: "POST", body: true });
    await x.a.write(Buffer.alloc(16 * KiB));
    await until(() => x.ended);
    expect(x.status()).toBe(413);
    // The connector stops the rest of the upload once its answer is through.
    await until(() => x.a.isReset !== undefined);
    expect(x.a.isReset).toMatchObject({ code: ResetCode.CANCELLED, remote: true });
    await expectH1Released();
  });

  it("a request body cut off by the relay aborts the target's request", async () => {
    const x = start("app", "/sink", { method: "POST", body: true });
    await x.a.write(Buffer.alloc(16 * KiB));
    await until(() => h1.busy === 1);
    x.a.reset(ResetCode.CANCELLED, "client aborted the upload");
    await expectH1Released();
    expect(x.b.body.destroyed).toBe(true);
  });

  it.each([
    ["before answering", "/die-before", false],
    ["after the response head", "/die-after-head", true],
  ])("the target failing %s resets the exchange", async (_, path, headFirst) => {
    const x = start("app", path);
    await until(() => x.a.isReset !== undefined);
    expect(x.a.isReset).toMatchObject({ code: ResetCode.TARGET_ERROR, remote: true });
    expect(x.headReceived()).toBe(headFirst);
    await expectH1Released();
  });

  it("the target failing mid-body while undici is paused is noticed when credit comes", async () => {
    const died = h1.died;
    const x = start("app", "/die-mid-body", { paused: true });
    await eventually(() => h1.died === died + 1, "the target to drop its connection");
    x.resume();
    await until(() => x.a.isReset !== undefined);
    expect(x.a.isReset).toMatchObject({ code: ResetCode.TARGET_ERROR, remote: true });
    await expectH1Released();
  });

  it("a target that refuses connections", async () => {
    const x = start("closed", "/");
    await until(() => x.a.isReset !== undefined);
    expect(x.a.isReset).toMatchObject({ code: ResetCode.TARGET_UNREACHABLE, remote: true });
    await until(() => x.b.isClosed);
  });
});

describe("HTTP/2 target: streams and sessions are let go", () => {
  it("reset before the dispatch: no stream, no connection", async () => {
    const before = h2.connections.total;
    const x = start("h2", "/bytes?size=1000");
    x.a.reset(ResetCode.CANCELLED, "client gone");
    await until(() => x.b.isClosed);
    await turns(3);
    expect(h2.connections.total).toBe(before);
    expect(h2.streamsTotal).toBe(0);
  });

  it("reset while the session connects: no stream is opened", async () => {
    const streams = h2.streamsTotal;
    const x = start("h2", "/bytes?size=1000");
    await until(() => h2.connections.open === 1); // the pool dials for this exchange
    x.a.reset(ResetCode.CANCELLED, "client gone");
    await until(() => x.b.isClosed);
    // The next request is served on the same session: the dial was not wasted, and nothing was sent for the cancelled one.
    const y = start("h2", "/small");
    await until(() => y.ended);
    expect(h2.streamsTotal).toBe(streams + 1);
    expect(h2.connections.open).toBe(1);
  });

  it.each([
    ["while waiting for the response head", "/hang", false],
    ["mid-body while paused on credit", `/bytes?size=${HUGE}`, true],
  ])("reset %s closes the stream", async (_, path, paused) => {
    const x = start("h2", path, { paused });
    if (paused) await eventually(() => h2.blocked === 1, "the h2 target to block on the connector");
    else await until(() => h2.streams === 1);
    x.a.reset(ResetCode.CANCELLED, "client gone");
    await until(() => h2.streams === 0);
    expect(h2.connections.open).toBe(1); // the session stays for the next request
  });

  it("a request body cut off by the relay cancels the stream", async () => {
    const x = start("h2", "/sink", { method: "POST", body: true });
    await x.a.write(Buffer.alloc(16 * KiB));
    await until(() => h2.streams === 1);
    x.a.reset(ResetCode.CANCELLED, "client aborted the upload");
    await until(() => h2.streams === 0);
    expect(x.b.body.destroyed).toBe(true);
  });

  it("the target resetting the stream resets the exchange", async () => {
    const x = start("h2", "/die-before");
    await until(() => x.a.isReset !== undefined);
    expect(x.a.isReset).toMatchObject({ code: ResetCode.TARGET_ERROR, remote: true });
    await until(() => h2.streams === 0 && x.b.isClosed);
  });
});

describe("upgrade target: the connection or upgraded socket is let go", () => {
  it("reset before the dispatch: the target is never contacted", async () => {
    const before = upgrades.connections.total;
    const x = start("up", "/", { upgrade: true });
    x.a.reset(ResetCode.CANCELLED, "client gone");
    await until(() => x.b.isClosed);
    await turns(3);
    expect(upgrades.connections.total).toBe(before);
  });

  it("reset while the target holds the upgrade request", async () => {
    const x = start("up", "/hold", { upgrade: true });
    await until(() => upgrades.held === 1);
    x.a.reset(ResetCode.CANCELLED, "client gone");
    await eventually(() => upgrades.connections.open === 0, "the upgrade request's connection to close");
  });

  it("reset after the switch, while the target floods the socket", async () => {
    const x = start("up", "/flood", { upgrade: true, paused: true });
    expect(await x.a.remoteHead).toMatchObject({ status: 101 });
    await eventually(() => blocked(upgrades.connections) === 1, "the upgraded socket to block on the connector");
    x.a.reset(ResetCode.CANCELLED, "client gone");
    await eventually(() => upgrades.connections.open === 0, "the upgraded socket to close");
  });
});

/**
 * The HTTP/1.1 target serves no request and keeps at most one connection: the replacement
 * undici dials after aborting a request it was running (nodejs/undici#5845), which serves nothing.
 */
async function expectH1Released(): Promise<void> {
  await eventually(() => h1.busy === 0, `the target to serve no request (serving: ${h1.busy})`);
  await eventually(() => h1.connections.open <= 1, `the target's connections to be let go (open: ${h1.connections.open})`);
}

interface Started {
  /** The relay's end. */
  a: Exchange;
  /** The connector's end, as the tunnel creates it. */
  b: Exchange;
  readonly ended: boolean;
  status(): number | undefined;
  headReceived(): boolean;
  /** Lets the relay's end read the response body again (grants credit). */
  resume(): void;
}

/**
 * Starts one exchange through a fresh forwarder, as a tunnel would: the relay's end sends the
 * head, the connector's end is made from it and forwarded. Frames cross on microtasks.
 */
function start(
  targetName: string,
  path: string,
  opts: { method?: string; body?: boolean; paused?: boolean; upgrade?: boolean; onDispatch?: (b: Exchange) => void } = {},
): Started {
  forwarder ??= createTargetForwarder(
    [spec("app", h1.url, "http1"), spec("h2", h2.origin, "h2c"), spec("up", upgrades.url, "http1"), spec("closed", "http://127.0.0.1:1", "http1")],
    quietLog,
  );
  const fw = forwarder;
  const id = newExchangeId();
  const common = { id, sendWindow: WINDOW, receiveWindow: WINDOW, maxFrameSize: 16 * KiB };
  const b = new Exchange({ ...common, send: (f) => queueMicrotask(() => a.receive(f)) });
  const a: Exchange = new Exchange({
    ...common,
    send: (f) =>
      queueMicrotask(() => {
        if (f.kind.case !== "requestHead") return b.receive(f);
        b.acceptHead(f.kind.value);
        if (opts.onDispatch) onceDispatched(() => opts.onDispatch!(b));
        fw.forward(b, f.kind.value);
      }),
  });
  let ended = false;
  let paused = opts.paused ?? false;
  a.consume({ data: () => !paused, end: () => (ended = true), error: () => {} });
  let head: { status: number } | undefined;
  void a.remoteHead.then((h) => (head = h as { status: number }), () => {});
  const headers: Header[] = opts.upgrade
    ? [h("upgrade", "websocket"), h("connection", "upgrade")]
    : opts.body ? [h("content-type", "application/octet-stream")] : [];
  a.sendRequestHead(
    create(RequestHeadSchema, {
      target: targetName,
      method: opts.method ?? "GET",
      path: path.split("?")[0],
      query: path.split("?")[1] ?? "",
      headers,
      upgrade: opts.upgrade ?? false,
      endStream: !opts.body && !opts.upgrade,
      responseWindow: WINDOW,
    }) as RequestHead,
  );
  return {
    a,
    b,
    get ended() {
      return ended;
    },
    status: () => head?.status,
    headReceived: () => head !== undefined,
    resume() {
      paused = false;
      a.resume();
    },
  };
}

function h(name: string, value: string): Header {
  return create(HeaderSchema, { name, value });
}

function spec(name: string, origin: string, transport: TargetSpec["transport"]): TargetSpec {
  return { name, origin, basePath: "", transport, host: { kind: "target" }, cors: undefined, allowedPaths: [], allowedMethods: [] };
}

/** Runs `fn` inside undici's next dispatch (diagnostics channel undici:request:create), before it starts the request. */
function onceDispatched(fn: () => void): void {
  const listener = () => {
    unsubscribe("undici:request:create", listener);
    fn();
  };
  subscribe("undici:request:create", listener);
}

function countDispatches(): { count(): number; stop(): void } {
  let n = 0;
  const listener = () => n++;
  subscribe("undici:request:create", listener);
  return { count: () => n, stop: () => unsubscribe("undici:request:create", listener) };
}

/** A few turns of the event loop: for asserting that something did not happen. */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Open connections whose peer stopped reading: bytes wait in the target's socket. */
function blocked(connections: OpenConnections): number {
  return [...connections.sockets].filter((s) => s.writableLength > 0).length;
}

/** Streams `size` pattern bytes with back-pressure; `onBlocked` is told while a write waits for 'drain'. */
function stream(out: { write(b: Buffer): boolean; end(): void; once(e: "drain", f: () => void): void; destroyed: boolean }, size: number, onBlocked?: (blocked: boolean) => void) {
  let off = 0;
  const write = () => {
    while (off < size && !out.destroyed) {
      const n = Math.min(64 * KiB, size - off);
      const ok = out.write(patternAt(off, n));
      off += n;
      if (!ok) {
        onBlocked?.(true);
        return void out.once("drain", () => {
          onBlocked?.(false);
          write();
        });
      }
    }
    if (!out.destroyed) out.end();
  };
  write();
}

interface CountingTarget {
  url: string;
  connections: OpenConnections;
  /** Requests being served right now, and received in all. */
  readonly busy: number;
  readonly requests: number;
  /** Connections the target dropped on purpose (/die-*). */
  readonly died: number;
  close(): Promise<void>;
}

async function startCountingTarget(): Promise<CountingTarget> {
  let busy = 0;
  let requests = 0;
  let died = 0;
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    busy++;
    requests++;
    res.once("close", () => busy--);
    const url = new URL(req.url!, "http://x");
    const die = () => {
      died++;
      req.socket.destroy();
    };
    switch (url.pathname) {
      case "/bytes":
        req.resume();
        res.writeHead(200, { "content-length": url.searchParams.get("size")! });
        return stream(res, Number(url.searchParams.get("size")));
      case "/hang":
        return void req.resume();
      case "/head-then-hang":
        req.resume();
        res.writeHead(200, { "content-type": "text/plain" });
        return void res.flushHeaders();
      case "/early":
        res.writeHead(413, { "content-type": "text/plain" });
        return void res.end("too big");
      case "/sink":
        return void req.resume(); // answers only at the end, which never comes here
      case "/die-before":
        return die();
      case "/die-after-head":
        res.writeHead(200, { "content-length": "100" });
        return void res.write("x", die);
      case "/die-mid-body":
        // More than the window (the connector pauses), less than the socket buffers (the write completes).
        res.writeHead(200, { "content-length": String(MiB) });
        return void res.write(Buffer.alloc(2 * WINDOW), die);
      default:
        req.resume();
        res.end("ok");
    }
  });
  server.keepAliveTimeout = 60_000; // a connection the connector still holds stays visible
  const connections = trackConnections(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections,
    get busy() {
      return busy;
    },
    get requests() {
      return requests;
    },
    get died() {
      return died;
    },
    close: () => closeServer(server, connections),
  };
}

interface CountingH2Target {
  /** http://host:port (the target spec's origin for an h2c:// URL). */
  origin: string;
  connections: OpenConnections;
  readonly streams: number;
  readonly streamsTotal: number;
  /** Response streams waiting for 'drain'. */
  readonly blocked: number;
  close(): Promise<void>;
}

async function startCountingH2Target(): Promise<CountingH2Target> {
  const server: Http2Server = createH2Server();
  const connections = trackConnections(server);
  let streams = 0;
  let streamsTotal = 0;
  let blockedStreams = 0;
  server.on("stream", (s: ServerHttp2Stream, headers) => {
    streams++;
    streamsTotal++;
    s.on("error", () => {});
    let isBlocked = false;
    const onBlocked = (b: boolean) => {
      if (b !== isBlocked) blockedStreams += b ? 1 : -1;
      isBlocked = b;
    };
    s.once("close", () => {
      streams--;
      onBlocked(false);
    });
    const url = new URL(String(headers[":path"]), "http://x");
    switch (url.pathname) {
      case "/bytes":
        s.respond({ ":status": 200 });
        return stream(s, Number(url.searchParams.get("size")), onBlocked);
      case "/hang":
      case "/sink":
        return void s.resume();
      case "/die-before":
        return void s.close(0x2); // RST_STREAM(INTERNAL_ERROR)
      default:
        s.resume();
        s.respond({ ":status": 200 });
        s.end("ok");
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections,
    get streams() {
      return streams;
    },
    get streamsTotal() {
      return streamsTotal;
    },
    get blocked() {
      return blockedStreams;
    },
    close: () => closeServer(server, connections),
  };
}

interface UpgradeTarget {
  url: string;
  connections: OpenConnections;
  /** Upgrade requests held without an answer (/hold). */
  readonly held: number;
  close(): Promise<void>;
}

/** Answers upgrades with 101 and then floods the socket (/flood), or holds them unanswered (/hold). */
async function startUpgradeTarget(): Promise<UpgradeTarget> {
  let held = 0;
  const server = createServer((_req, res) => res.end("upgrade only"));
  server.on("upgrade", (req: IncomingMessage, socket: Socket) => {
    socket.on("error", () => {});
    // Reading, so it sees the connector's FIN, and closing then (the server's sockets allow half-open).
    socket.resume();
    socket.once("end", () => socket.end());
    if (req.url === "/hold") {
      held++;
      socket.once("close", () => held--);
      return;
    }
    socket.write("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n");
    stream(socket, HUGE);
  });
  const connections = trackConnections(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections,
    get held() {
      return held;
    },
    close: () => closeServer(server, connections),
  };
}

async function closeServer(server: Server | Http2Server, connections: OpenConnections): Promise<void> {
  for (const s of connections.sockets) s.destroy();
  await new Promise((resolve) => server.close(resolve));
}
