import { createServer, type Server } from "node:http";
import { connect as http2Connect, type ClientHttp2Session } from "node:http2";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { HostileConnector } from "../helpers/hostile-connector.js";
import { request, type Reply } from "../helpers/http.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { rawPeer, within } from "./raw-peers.js";

// Findings 1 and 10: what a connector answers is framed again by the relay. Headers and trailers the client's
// protocol cannot carry never reach Node's writers (which throw), statuses and content-length are checked, and the
// body is cut at its declared length: a hostile connector ("evil") can break only its own exchange, never the process,
// another exchange, or the next response on a pipelined connection (tenant "acme", an ordinary target).
let relay: TestRelay;
let evil: HostileConnector;
let target: TestTarget;
let oddTarget: Server;
let connector: Connector;

beforeAll(async () => {
  relay = await startTestRelay();
  evil = await HostileConnector.connect(relay.url, await relay.tenantWithKey("evil"));
  target = await startTestTarget();
  // An ordinary server with unusual trailers: two Content-Type (single-valued in HTTP/2) and two ETag.
  oddTarget = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { "content-type": "text/plain", trailer: "content-type, etag, x-sum" });
    res.write("odd body");
    res.addTrailers([
      ["Content-Type", "a"],
      ["Content-Type", "b"],
      ["ETag", '"1"'],
      ["ETag", '"2"'],
      ["X-Sum", "42"],
    ]);
    res.end();
  });
  await new Promise<void>((resolve) => oddTarget.listen(0, "127.0.0.1", resolve));
  connector = await startTestConnector(
    relay.url,
    await relay.tenantWithKey("acme"),
    { app: target.url, odd: `http://127.0.0.1:${(oddTarget.address() as AddressInfo).port}` },
    { tunnels: 1 },
  );
});

afterAll(async () => {
  evil?.destroy();
  await connector?.stop();
  await relay?.close();
  await target?.close();
  oddTarget?.closeAllConnections();
  await new Promise((resolve) => oddTarget?.close(resolve));
});

type Answer = (id: Uint8Array) => void;

/** Sends a request to the hostile connector's target and answers it with `answer`. */
async function viaEvil<T>(send: () => Promise<T>, answer: Answer): Promise<T> {
  const after = evil.frames().length;
  const pending = send();
  const ex = await evil.nextRequest(after);
  answer(ex!.id);
  return pending;
}

const h1 = (path = "/x", method = "GET") => () =>
  request(`${relay.url}/relay/evil/app${path}`, { method }).then(
    (r) => r,
    (e: Error) => e,
  );

function h2(session: ClientHttp2Session, path = "/x", method = "GET") {
  return () =>
    new Promise<{ status: number; body: string; trailers: Record<string, unknown>; error?: Error }>((resolve) => {
      const stream = session.request({ ":method": method, ":path": `/relay/evil/app${path}` });
      let status = 0;
      let body = "";
      let trailers: Record<string, unknown> = {};
      stream.on("response", (h) => (status = Number(h[":status"])));
      stream.on("trailers", (t) => (trailers = t));
      stream.setEncoding("utf8");
      stream.on("data", (d: string) => (body += d));
      stream.on("end", () => resolve({ status, body, trailers }));
      stream.on("error", (error: Error) => resolve({ status, body, trailers, error }));
    });
}

const faultCount = (reason: string) => relay.relay.faults.faults().get(`connector\u0000${reason}`)?.count ?? 0;

/** The relay and an ordinary tenant still work: nothing but the one exchange was affected. */
async function stillServing(): Promise<void> {
  const res = await request(`${relay.url}/relay/acme/app/echo`, { method: "POST", body: "still here" });
  expect(res.status).toBe(200);
  expect(res.body.toString()).toBe("still here");
}

const errorCode = (r: Reply | Error) => (r instanceof Error ? r.message : (JSON.parse(r.body.toString()) as { error: { code: string } }).error.code);

describe("trailers the relay cannot write (finding 1)", () => {
  const bad: Array<[string, Array<[string, string]>]> = [
    ["a name with a space", [["bad name", "x"]]],
    ["CR/LF in a value", [["x-injected", "a\r\nset-cookie: evil=1"]]],
    ["a NUL in a value", [["x-nul", "a\u0000b"]]],
    ["a pseudo-header", [[":status", "200"]]],
    ["a connection-specific field", [["connection", "close"], ["transfer-encoding", "chunked"]]],
    ["a repeated single-value field", [["content-md5", "a"], ["content-md5", "b"]]],
    ["a character above U+00FF", [["x-wide", "\u2028"]]],
  ];

  it.each(bad)("drops %s for an HTTP/1.1 client; the body and good trailers arrive", async (_what, trailers) => {
    const res = await viaEvil(h1(), (id) => evil.respond(id, 200, [["content-type", "text/plain"]], "body", [...trailers, ["x-good", "yes"]]));
    expect(res).not.toBeInstanceOf(Error);
    const reply = res as Reply;
    expect(reply.status).toBe(200);
    expect(reply.body.toString()).toBe("body");
    expect(reply.trailers["x-good"]).toBe("yes");
    expect(reply.trailers["set-cookie"]).toBeUndefined();
    expect(Object.keys(reply.trailers).filter((n) => n !== "x-good" && n !== "content-md5")).toEqual([]);
    await stillServing();
  });

  it.each(bad)("drops %s for an HTTP/2 client; the body and good trailers arrive", async (_what, trailers) => {
    const session = http2Connect(relay.url);
    try {
      const res = await viaEvil(h2(session), (id) => evil.respond(id, 200, [["content-type", "text/plain"]], "body", [...trailers, ["x-good", "yes"]]));
      expect(res.error).toBeUndefined();
      expect(res.status).toBe(200);
      expect(res.body).toBe("body");
      expect(res.trailers["x-good"]).toBe("yes");
    } finally {
      session.close();
    }
    await stillServing();
  });

  it("counts an invalid trailer as a connector fault", async () => {
    const before = faultCount("bad_trailer");
    await viaEvil(h1(), (id) => evil.respond(id, 200, [], "b", [["bad name", "x"]]));
    expect(faultCount("bad_trailer")).toBe(before + 1);
  });

  it("an ordinary target's repeated trailers reach an HTTP/2 client without crashing the relay", async () => {
    const session = http2Connect(relay.url);
    try {
      const res = await new Promise<{ status: number; body: string; trailers: Record<string, unknown> }>((resolve, reject) => {
        const stream = session.request({ ":path": "/relay/acme/odd/x", te: "trailers" });
        let status = 0;
        let body = "";
        let trailers: Record<string, unknown> = {};
        stream.on("response", (h) => (status = Number(h[":status"])));
        stream.on("trailers", (t) => (trailers = t));
        stream.setEncoding("utf8");
        stream.on("data", (d: string) => (body += d));
        stream.on("end", () => resolve({ status, body, trailers }));
        stream.on("error", reject);
      });
      expect(res.status).toBe(200);
      expect(res.body).toBe("odd body");
      // Content-Type cannot be a trailer (RFC 9110 §6.5.1): dropped. ETag keeps its first value. The rest pass.
      expect(res.trailers["content-type"]).toBeUndefined();
      expect(res.trailers.etag).toBe('"1"');
      expect(res.trailers["x-sum"]).toBe("42");
    } finally {
      session.close();
    }
    await stillServing();
  });
});

describe("response heads the relay cannot write (finding 1)", () => {
  it.each([
    ["a name with a space", [["bad name", "x"]]],
    ["CR/LF in a value", [["x-injected", "a\r\nset-cookie: evil=1"]]],
    ["a pseudo-header", [[":path", "/"]]],
    ["an empty name", [["", "x"]]],
  ] as Array<[string, Array<[string, string]>]>)("answers 502 bad_response for %s, over HTTP/1.1 and HTTP/2", async (_what, headers) => {
    const before = faultCount("bad_response_header");
    const res = await viaEvil(h1(), (id) => evil.respond(id, 200, headers, "body"));
    expect((res as Reply).status).toBe(502);
    expect(errorCode(res)).toBe("bad_response");
    const session = http2Connect(relay.url);
    try {
      const r2 = await viaEvil(h2(session), (id) => evil.respond(id, 200, headers, "body"));
      expect(r2.status).toBe(502);
    } finally {
      session.close();
    }
    expect(faultCount("bad_response_header")).toBe(before + 2);
    await stillServing();
  });

  it("keeps the first of a repeated single-value header, for HTTP/2 (where Node throws) as for HTTP/1.1", async () => {
    const headers: Array<[string, string]> = [
      ["content-type", "text/plain"],
      ["content-type", "text/html"],
      ["x-list", "1"],
      ["x-list", "2"],
    ];
    const res = (await viaEvil(h1(), (id) => evil.respond(id, 200, headers, "body"))) as Reply;
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("text/plain");
    expect(res.headers["x-list"]).toBe("1, 2");
    const session = http2Connect(relay.url);
    try {
      const r2 = await viaEvil(h2(session), (id) => evil.respond(id, 200, headers, "body"));
      expect(r2.status).toBe(200);
      expect(r2.body).toBe("body");
    } finally {
      session.close();
    }
  });
});

describe("statuses (finding 10)", () => {
  it.each([0, 99, 100, 103, 101, 199, 600, 999, 1000, -1])("answers 502 bad_response for a final status %i to a plain request", async (status) => {
    const before = faultCount("bad_status");
    const res = await viaEvil(h1(), (id) => evil.respond(id, status, [], "body"));
    expect((res as Reply).status).toBe(502);
    expect(errorCode(res)).toBe("bad_response");
    expect(faultCount("bad_status")).toBe(before + 1);
  });

  it.each([200, 299, 404, 599])("passes status %i", async (status) => {
    const res = (await viaEvil(h1(), (id) => evil.respond(id, status, [], "body"))) as Reply;
    expect(res.status).toBe(status);
  });
});

describe("content-length (finding 10)", () => {
  it.each([
    ["repeated", [["content-length", "4"], ["content-length", "4"]]],
    ["conflicting", [["content-length", "4"], ["content-length", "5"]]],
    ["a list", [["content-length", "4, 4"]]],
    ["not a number", [["content-length", "four"]]],
    ["negative", [["content-length", "-4"]]],
    ["signed", [["content-length", "+4"]]],
    ["too large", [["content-length", "99999999999999999999"]]],
    ["empty", [["content-length", ""]]],
  ] as Array<[string, Array<[string, string]>]>)("answers 502 bad_response for a %s content-length", async (_what, headers) => {
    const before = faultCount("bad_content_length");
    const res = await viaEvil(h1(), (id) => evil.respond(id, 200, headers, "body"));
    expect((res as Reply).status).toBe(502);
    expect(errorCode(res)).toBe("bad_response");
    expect(faultCount("bad_content_length")).toBe(before + 1);
  });

  it("passes a body of exactly its content-length", async () => {
    const res = (await viaEvil(h1(), (id) => evil.respond(id, 200, [["content-length", "4"]], "body"))) as Reply;
    expect(res.status).toBe(200);
    expect(res.headers["content-length"]).toBe("4");
    expect(res.body.toString()).toBe("body");
  });

  it("breaks a response whose body ends before its content-length, on both protocols", async () => {
    const before = faultCount("body_shorter_than_content_length");
    const res = await viaEvil(h1(), (id) => evil.respond(id, 200, [["content-length", "10"]], "body"));
    expect(res).toBeInstanceOf(Error);
    const session = http2Connect(relay.url);
    try {
      const r2 = await viaEvil(h2(session), (id) => evil.respond(id, 200, [["content-length", "10"]], "body"));
      expect(r2.error ?? r2.body.length < 10).toBeTruthy();
      expect(r2.body.length).toBeLessThan(10);
    } finally {
      session.close();
    }
    expect(faultCount("body_shorter_than_content_length")).toBe(before + 2);
  });

  it("breaks a bodiless head that declares a content-length (the client would wait for bytes that never come)", async () => {
    const res = await viaEvil(h1(), (id) => evil.sendFrames([HostileConnector.responseHead(id, 200, [["content-length", "5"]], true)]));
    expect((res as Reply).status).toBe(502);
    expect(errorCode(res)).toBe("bad_response");
  });

  it("cuts a body longer than its content-length and resets an HTTP/2 stream", async () => {
    const before = faultCount("body_longer_than_content_length");
    const session = http2Connect(relay.url);
    try {
      const r2 = await viaEvil(h2(session), (id) => evil.respond(id, 200, [["content-length", "4"]], "bodyAND MORE"));
      expect(r2.body).not.toContain("MORE");
      expect(r2.error).toBeDefined();
    } finally {
      session.close();
    }
    expect(faultCount("body_longer_than_content_length")).toBe(before + 1);
    await stillServing();
  });

  it("a target that sends more than its content-length cannot answer the next pipelined request (another tenant's)", async () => {
    const peer = await rawPeer(relay.url);
    // Two requests in one write, as a pipelining client (or a shared proxy connection) sends them.
    peer.socket.write(
      "GET /relay/evil/app/first HTTP/1.1\r\nHost: relay\r\n\r\n" + "GET /relay/acme/app/json HTTP/1.1\r\nHost: relay\r\n\r\n",
    );
    const forged = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nforged answer!";
    const ex = await evil.nextRequest(evil.frames().length);
    evil.respond(ex!.id, 200, [["content-length", "5"], ["content-type", "text/plain"]], `hello${forged}`);
    const { bytes } = await within(peer.closed, 10_000, "the connection of a response longer than its content-length");
    const text = bytes.toString("latin1");
    expect(text).not.toContain("forged");
    // Whatever arrived is at most the first answer: never a second status line made of the target's bytes.
    expect(text.split("HTTP/1.1 ").length - 1).toBeLessThanOrEqual(1);
    await stillServing();
  });
});

describe("bodiless responses (finding 10)", () => {
  it.each([
    ["HEAD", 200],
    ["GET", 204],
    ["GET", 304],
  ] as Array<[string, number]>)("%s answered %i carries no body, even if the connector sends one", async (method, status) => {
    const peer = await rawPeer(relay.url);
    peer.socket.write(`${method} /relay/evil/app/x HTTP/1.1\r\nHost: relay\r\n\r\nGET /relay/acme/app/json HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n`);
    const ex = await evil.nextRequest(evil.frames().length);
    evil.respond(ex!.id, status, [["content-length", "9"]], "HTTP/1.1 ");
    const { bytes } = await within(peer.closed, 10_000, "the pipelined connection");
    const text = bytes.toString("latin1");
    // Two answers, the second from the ordinary target: nothing of the connector's body between them.
    const answers = text.split(/(?=HTTP\/1\.1 \d{3} )/);
    expect(answers.length).toBe(2);
    expect(answers[0]).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
    expect(answers[0]!.endsWith("\r\n\r\n")).toBe(true);
    expect(answers[1]).toMatch(/^HTTP\/1\.1 200 /);
    expect(answers[1]).toContain('"url":"/json"');
  });
});

describe("upgrades (finding 10)", () => {
  it("refuses a 101 to a request that did not ask to upgrade", async () => {
    const res = await viaEvil(h1(), (id) => evil.respond(id, 101, [["upgrade", "websocket"], ["connection", "upgrade"]]));
    expect((res as Reply).status).toBe(502);
    expect(errorCode(res)).toBe("bad_response");
  });
});
