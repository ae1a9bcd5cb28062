import { once } from "node:events";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { connect as http2Connect, type ClientHttp2Session } from "node:http2";
import { readFileSync } from "node:fs";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { makeTestPki } from "../helpers/certs.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { patternAt, patternSha256, startTestTarget, type TestTarget } from "../helpers/targets.js";
import { nextMessage, openWebSocket, startWebSocketTarget, type WebSocketTarget } from "../helpers/websocket-targets.js";
import { clientHello, H2_PREFACE, rawPeer, trickle, within } from "./raw-peers.js";

// Finding 5 of issue 12 (slowloris): before, a socket that sent one byte (or a partial head,
// or a partial HTTP/2 preface, or an HTTP/2 connection without a stream) was held for as long
// as it liked. Every socket must now present its head within headersTimeout, and a
// connection with nothing in progress closes after idleTimeout; a body may still take as long
// as it needs.
const HEADERS_MS = 300;
const IDLE_MS = 300;
/** How late a close may come: the connection checker's period and a loaded CI machine. */
const SLACK_MS = 2_500;
const limits = { headersTimeoutMs: HEADERS_MS, idleTimeoutMs: IDLE_MS };
const pki = makeTestPki();
const ca = readFileSync(pki.ca);

let plain: TestRelay;
let secure: TestRelay;
let target: TestTarget;
let wsTarget: WebSocketTarget;
let connectors: Connector[] = [];
/** The cleartext relay's tunnel right after start-up: the tests after it take many idle periods. */
let firstTunnel: unknown;

beforeAll(async () => {
  [plain, secure, target, wsTarget] = await Promise.all([
    startTestRelay({ limits }),
    startTestRelay({ limits, tlsCert: pki.cert, tlsKey: pki.key, ca: pki.ca }),
    startTestTarget(),
    startWebSocketTarget(),
  ]);
  const targets = { app: target.url, ws: wsTarget.url };
  connectors = await Promise.all(
    [plain, secure].map(async (r) => startTestConnector(r.url, await r.tenantWithKey("slow"), targets, { tunnels: 1, flags: { ca: pki.ca } })),
  );
  firstTunnel = plain.relay.registry.tunnels("slow")[0];
});

afterAll(async () => {
  await Promise.all(connectors.map((c) => c.stop()));
  await Promise.all([plain?.close(), secure?.close(), target?.close(), wsTarget?.close()]);
});

function expectClosedInTime(ms: number, after = HEADERS_MS): void {
  expect(ms).toBeGreaterThanOrEqual(after - 5);
  expect(ms).toBeLessThan(after + SLACK_MS);
}

async function h2Session(url: string): Promise<{ session: ClientHttp2Session; closed: Promise<number>; goaway: Promise<unknown> }> {
  const session = http2Connect(url, { ca });
  session.on("error", () => {});
  const started = Date.now();
  const closed = once(session, "close").then(() => Date.now() - started);
  const goaway = once(session, "goaway");
  await once(session, "connect");
  return { session, closed, goaway };
}

/** A TLS connection that finished its handshake (ALPN `protocol`) and then says nothing more. */
async function tlsPeer(url: string, protocol: "http/1.1"): Promise<{ socket: TLSSocket; closed: Promise<{ ms: number; text: string }> }> {
  const { port } = new URL(url);
  const socket = tlsConnect({ host: "127.0.0.1", port: Number(port), ca, servername: "localhost", ALPNProtocols: [protocol] });
  socket.on("error", () => {});
  let text = "";
  socket.on("data", (c: Buffer) => (text += c.toString("latin1")));
  await once(socket, "secureConnect");
  const started = Date.now();
  return { socket, closed: once(socket, "close").then(() => ({ ms: Date.now() - started, text })) };
}

/** POSTs `size` pattern bytes in `pieces` writes `everyMs` apart (a slow uploader) and returns what the target saw. */
function slowUpload(url: string, size: number, pieces: number, everyMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const send = url.startsWith("https:") ? httpsRequest : httpRequest;
    const req = send(`${url}/relay/slow/app/sink`, { method: "POST", headers: { "content-length": String(size) }, ca }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode!, body }));
    });
    req.on("error", reject);
    const piece = size / pieces;
    let sent = 0;
    const timer = setInterval(() => {
      req.write(patternAt(sent, piece));
      sent += piece;
      if (sent >= size) {
        clearInterval(timer);
        req.end();
      }
    }, everyMs);
  });
}

describe("cleartext: headersTimeout on every socket until its head is complete", () => {
  it("closes a socket that never says anything", async () => {
    const peer = await rawPeer(plain.url);
    const { ms } = await within(peer.closed, HEADERS_MS + SLACK_MS, "silent socket");
    expectClosedInTime(ms);
  });

  it("closes a socket that stops inside an HTTP/1.1 request head, with a 408", async () => {
    const peer = await rawPeer(plain.url);
    peer.socket.write("GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Slow: 1\r\n");
    const { ms, bytes } = await within(peer.closed, HEADERS_MS + SLACK_MS, "partial HTTP/1.1 head");
    expectClosedInTime(ms);
    expect(bytes.toString("latin1")).toMatch(/^HTTP\/1\.1 408 /);
  });

  it("closes a socket that trickles an HTTP/1.1 head a byte at a time", async () => {
    const peer = await rawPeer(plain.url);
    trickle(peer.socket, Buffer.from(`GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Slow: ${"a".repeat(200)}\r\n\r\n`), 10);
    const { ms } = await within(peer.closed, HEADERS_MS + SLACK_MS, "trickled HTTP/1.1 head");
    expectClosedInTime(ms);
  });

  it("closes a socket that stops inside the HTTP/2 connection preface", async () => {
    const peer = await rawPeer(plain.url);
    peer.socket.write(H2_PREFACE.subarray(0, 10));
    const { ms } = await within(peer.closed, HEADERS_MS + SLACK_MS, "partial HTTP/2 preface");
    expectClosedInTime(ms);
  });

  it("closes a socket that trickles the HTTP/2 preface", async () => {
    const peer = await rawPeer(plain.url);
    trickle(peer.socket, H2_PREFACE, HEADERS_MS / 5);
    const { ms } = await within(peer.closed, HEADERS_MS + SLACK_MS, "trickled HTTP/2 preface");
    expectClosedInTime(ms);
  });

  it("closes an HTTP/2 session that opens no stream", async () => {
    const { closed, goaway } = await h2Session(plain.url);
    const ms = await within(closed, HEADERS_MS + SLACK_MS, "HTTP/2 session without a stream");
    expectClosedInTime(ms);
    await goaway;
  });

  it("counts the refusals", () => {
    expect(plain.relay.faults.limits().get("headersTimeout") ?? 0).toBeGreaterThanOrEqual(4);
  });
});

describe("cleartext: idleTimeout between requests", () => {
  it("closes a keep-alive HTTP/1.1 connection that stays idle after its answer", async () => {
    const peer = await rawPeer(plain.url);
    peer.socket.write("GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n");
    const answered = Date.now();
    const { bytes } = await within(peer.closed, IDLE_MS + 1_000 + SLACK_MS, "idle keep-alive connection");
    expect(bytes.toString("latin1")).toMatch(/^HTTP\/1\.1 200 /);
    expect(Date.now() - answered).toBeGreaterThanOrEqual(IDLE_MS);
  });

  it("sends GOAWAY to an HTTP/2 session with no open stream", async () => {
    const { session, closed, goaway } = await h2Session(plain.url);
    const stream = session.request({ ":path": "/healthz" });
    stream.resume();
    await once(stream, "close");
    const idleSince = Date.now();
    await within(closed, IDLE_MS + SLACK_MS, "idle HTTP/2 session");
    await goaway;
    expect(Date.now() - idleSince).toBeGreaterThanOrEqual(IDLE_MS - 5);
  });
});

describe("cleartext: an Upgrade request served as a plain one (h2c)", () => {
  const h2cUpgrade = "GET /healthz HTTP/1.1\r\nHost: relay\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n";

  it("times the next head on that connection too", async () => {
    const peer = await rawPeer(plain.url);
    peer.socket.write(h2cUpgrade);
    peer.socket.write("GET /healthz HTTP/1.1\r\nHost: relay\r\n");
    const { ms, bytes } = await within(peer.closed, HEADERS_MS + SLACK_MS, "partial head after an h2c upgrade request");
    expectClosedInTime(ms);
    const text = bytes.toString("latin1");
    expect(text).toMatch(/^HTTP\/1\.1 200 /);
    expect(text).toContain("HTTP/1.1 408 ");
  });

  it("closes that connection when it stays idle after its answer", async () => {
    const peer = await rawPeer(plain.url);
    peer.socket.write(h2cUpgrade);
    const { ms, bytes } = await within(peer.closed, IDLE_MS + 1_000 + SLACK_MS, "idle connection after an h2c upgrade request");
    expect(bytes.toString("latin1")).toMatch(/^HTTP\/1\.1 200 /);
    expect(ms).toBeGreaterThanOrEqual(IDLE_MS);
  });
});

describe("an upgraded WebSocket is long-lived by design", () => {
  it("stays open, idle, past idleTimeout", async () => {
    const ws = await openWebSocket(`${plain.url.replace(/^http/, "ws")}/relay/slow/ws/`);
    // A keep-alive connection opened now closes after idleTimeout (+1s); the WebSocket, idle as long, must not.
    const peer = await rawPeer(plain.url);
    peer.socket.write("GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n");
    await within(peer.closed, IDLE_MS + 1_000 + SLACK_MS, "idle keep-alive connection");
    expect(ws.readyState).toBe(ws.OPEN);
    ws.send("still here");
    expect((await nextMessage(ws)).data.toString()).toBe("still here");
    ws.close();
  });
});

describe("a slow body is not a slow head", () => {
  const size = 8 * 64 * 1024;

  it("lets an HTTP/1.1 upload trickle for longer than headersTimeout and idleTimeout", async () => {
    const started = Date.now();
    const reply = await slowUpload(plain.url, size, 8, HEADERS_MS / 2);
    expect(Date.now() - started).toBeGreaterThan(HEADERS_MS + IDLE_MS);
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.body)).toMatchObject({ bytes: size, sha256: patternSha256(size) });
  });

  it("lets the same upload trickle over TLS", async () => {
    const reply = await slowUpload(secure.url, size, 8, HEADERS_MS / 2);
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.body)).toMatchObject({ bytes: size, sha256: patternSha256(size) });
  });

  it("lets an HTTP/2 upload trickle, its session being busy, not idle", async () => {
    const { session } = await h2Session(plain.url);
    const stream = session.request({ ":method": "POST", ":path": "/relay/slow/app/sink", "content-length": String(size) });
    let body = "";
    stream.on("data", (c: Buffer) => (body += c.toString()));
    let sent = 0;
    const timer = setInterval(() => {
      stream.write(patternAt(sent, size / 8));
      sent += size / 8;
      if (sent >= size) {
        clearInterval(timer);
        stream.end();
      }
    }, HEADERS_MS / 2);
    const [headers] = (await once(stream, "response")) as [Record<string, unknown>];
    await once(stream, "end");
    expect(headers[":status"]).toBe(200);
    expect(JSON.parse(body)).toMatchObject({ bytes: size, sha256: patternSha256(size) });
    session.close();
  });
});

describe("TLS: the handshake and every head within headersTimeout", () => {
  it("closes a socket that never starts its handshake", async () => {
    const peer = await rawPeer(secure.url);
    const { ms } = await within(peer.closed, HEADERS_MS + SLACK_MS, "silent TLS socket");
    expectClosedInTime(ms);
  });

  it("closes a socket that trickles its ClientHello", async () => {
    const hello = await clientHello();
    const peer = await rawPeer(secure.url);
    trickle(peer.socket, hello, 10);
    const { ms } = await within(peer.closed, HEADERS_MS + SLACK_MS, "trickled ClientHello");
    expectClosedInTime(ms);
  });

  it("closes an HTTP/1.1 connection whose head never completes, with a 408", async () => {
    const { socket, closed } = await tlsPeer(secure.url, "http/1.1");
    socket.write("GET /healthz HTTP/1.1\r\nHost: relay\r\n");
    const { ms, text } = await within(closed, HEADERS_MS + SLACK_MS, "partial head over TLS");
    expectClosedInTime(ms);
    expect(text).toMatch(/^HTTP\/1\.1 408 /);
  });

  it("closes an HTTP/1.1 connection that sends nothing after the handshake", async () => {
    const { closed } = await tlsPeer(secure.url, "http/1.1");
    const { ms } = await within(closed, HEADERS_MS + SLACK_MS, "silent TLS HTTP/1.1 connection");
    expectClosedInTime(ms);
  });

  it("closes a keep-alive HTTP/1.1 connection that stays idle after its answer", async () => {
    const { socket, closed } = await tlsPeer(secure.url, "http/1.1");
    socket.write("GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n");
    const { ms, text } = await within(closed, IDLE_MS + 1_000 + SLACK_MS, "idle TLS keep-alive connection");
    expect(text).toMatch(/^HTTP\/1\.1 200 /);
    expect(ms).toBeGreaterThanOrEqual(IDLE_MS);
  });

  it("closes an HTTP/2 session that opens no stream", async () => {
    const { closed } = await h2Session(secure.url);
    const ms = await within(closed, HEADERS_MS + SLACK_MS, "TLS HTTP/2 session without a stream");
    expectClosedInTime(ms);
  });

  it("counts the refusals", () => {
    expect(secure.relay.faults.limits().get("headersTimeout") ?? 0).toBeGreaterThanOrEqual(3);
  });
});

describe("tunnels are not idle", () => {
  it("keeps a connector's tunnel session open while it carries no exchange (runs last)", () => {
    expect(firstTunnel).toBeDefined();
    expect(plain.relay.registry.tunnels("slow")).toContain(firstTunnel);
  });
});
