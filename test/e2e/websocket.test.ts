import { createHash, randomBytes } from "node:crypto";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { until } from "../helpers/wait.js";
import {
  closed,
  nextMessage,
  openWebSocket,
  startPythonWebSocketEcho,
  startWebSocketTarget,
  type WebSocketTarget,
} from "../helpers/websocket-targets.js";

const MiB = 1024 * 1024;

let relay: TestRelay;
let connector: Connector;
let target: WebSocketTarget;
let python: Awaited<ReturnType<typeof startPythonWebSocketEcho>>;
/** ws://relay/relay/acme/chat */
let base: string;
let relayPort: number;

beforeAll(async () => {
  [target, python] = await Promise.all([startWebSocketTarget(), startPythonWebSocketEcho()]);
  relay = await startTestRelay({ baseDomain: "relay.test", keepaliveMs: 200 });
  const key = await relay.tenantWithKey("acme");
  connector = await startTestConnector(relay.url, key, {
    chat: target.url,
    py: python.url,
    // The app that builds links from the Host it sees.
    crm: { url: target.url, hostHeader: "original" },
  });
  base = `${relay.url.replace(/^http/, "ws")}/relay/acme/chat`;
  relayPort = relay.server.port;
});

afterAll(async () => {
  await connector?.stop();
  await relay?.close();
  await Promise.all([target?.close(), python?.close()]);
});

describe("WebSockets through the relay", () => {
  it("echoes text and binary messages both ways, at the path the app expects", async () => {
    const ws = await openWebSocket(`${base}/ws/client/websocket?token=abc`);
    ws.send("hello");
    expect(await nextMessage(ws)).toEqual({ data: Buffer.from("hello"), binary: false });
    const bytes = randomBytes(1000);
    ws.send(bytes);
    expect(await nextMessage(ws)).toEqual({ data: bytes, binary: true });
    expect(target.seen.at(-1)!.url).toBe("/ws/client/websocket?token=abc");
    ws.close(1000, "done");
    expect(await closed(ws)).toEqual({ code: 1000, reason: "done" });
  });

  it("carries 1 MiB binary messages intact, several in flight", async () => {
    const ws = await openWebSocket(`${base}/big`);
    const messages = Array.from({ length: 8 }, () => randomBytes(MiB));
    const received: Buffer[] = [];
    const all = new Promise<void>((resolve) =>
      ws.on("message", (data: Buffer) => {
        received.push(data);
        if (received.length === messages.length) resolve();
      }),
    );
    for (const m of messages) ws.send(m);
    await all;
    expect(received.map(sha)).toEqual(messages.map(sha));
    ws.close();
  });

  it("passes fragmented messages, pings and pongs", async () => {
    const ws = await openWebSocket(`${base}/frag`);
    // One message in three frames: the target's parser joins them.
    ws.send("par", { fin: false });
    ws.send("t o", { fin: false });
    ws.send("f one", { fin: true });
    expect((await nextMessage(ws)).data.toString()).toBe("part of one");
    const pong = new Promise<string>((resolve) => ws.once("pong", (data) => resolve(data.toString())));
    ws.ping("are you there");
    expect(await pong).toBe("are you there"); // answered by the target, not by Ferry
    const seen = target.seen.at(-1)!;
    expect(seen.pings).toEqual(["are you there"]);
    const ping = new Promise<string>((resolve) => ws.once("ping", (data) => resolve(data.toString())));
    seen.socket.ping("server ping");
    expect(await ping).toBe("server ping");
    ws.close();
  });

  it("passes close codes and reasons both ways", async () => {
    const a = await openWebSocket(`${base}/close`);
    a.close(4000, "client says bye");
    expect(await closed(a)).toEqual({ code: 4000, reason: "client says bye" });
    await until(() => target.seen.at(-1)!.closed !== undefined);
    expect(target.seen.at(-1)!.closed).toEqual({ code: 4000, reason: "client says bye" });

    const b = await openWebSocket(`${base}/close`);
    b.send("close 4001 server says bye");
    expect(await closed(b)).toEqual({ code: 4001, reason: "server says bye" });
  });

  it("negotiates the subprotocol end to end and forwards the client's headers", async () => {
    const ws = await openWebSocket(`${base}/proto`, { protocols: ["chat.v1", "chat.v2"], headers: { "x-tenant-user": "ann" } });
    expect(ws.protocol).toBe("chat.v2");
    const seen = target.seen.at(-1)!;
    expect(seen.headers["x-tenant-user"]).toBe("ann");
    expect(seen.headers["x-forwarded-prefix"]).toBe("/relay/acme/chat");
    ws.close();
  });

  it("forwards bytes the client sent together with the handshake", async () => {
    // A client that does not wait for the 101: its first frame arrives in the same packet as the request head.
    const socket = connect(relayPort, "127.0.0.1");
    await new Promise((resolve) => socket.once("connect", resolve));
    const payload = Buffer.from("early bird");
    const mask = randomBytes(4);
    const frame = Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, payload.map((b, i) => b ^ mask[i % 4]!)]);
    const head = [
      "GET /relay/acme/chat/early HTTP/1.1",
      `Host: 127.0.0.1:${relayPort}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}`,
      "Sec-WebSocket-Version: 13",
      "",
      "",
    ].join("\r\n");
    let got = Buffer.alloc(0);
    socket.on("data", (c: Buffer) => (got = Buffer.concat([got, c])));
    socket.write(Buffer.concat([Buffer.from(head), frame]));
    const echoed = Buffer.concat([Buffer.from([0x81, payload.length]), payload]);
    await until(() => got.includes(echoed));
    expect(got.toString().startsWith("HTTP/1.1 101 Switching Protocols\r\n")).toBe(true);
    socket.destroy();
  });

  it("passes a target's refusal through as an ordinary response", async () => {
    const err = await openWebSocket(`${base}/forbidden`).catch((e: { status: number; body: string }) => e);
    expect(err).toMatchObject({ status: 403, body: '{"error":"go away"}' });
  });

  it("answers a bad upgrade with the relay's JSON errors", async () => {
    const ws = relay.url.replace(/^http/, "ws");
    await expect(openWebSocket(`${ws}/relay/nobody/chat/x`)).rejects.toMatchObject({ status: 404, body: expect.stringContaining("tenant_not_found") });
    await expect(openWebSocket(`${ws}/relay/acme/nothere/x`)).rejects.toMatchObject({ status: 404, body: expect.stringContaining("target_not_found") });
    await relay.admin.createTenant({ name: "lonely" });
    await expect(openWebSocket(`${ws}/relay/lonely/chat/x`)).rejects.toMatchObject({
      status: 503,
      body: expect.stringContaining("no_connector"),
      headers: expect.objectContaining({ "retry-after": expect.any(String), connection: "close" }),
    });
    await expect(openWebSocket(`ws://127.0.0.1:${relayPort}/`, { headers: { host: "acme.relay.test" } })).rejects.toMatchObject({
      status: 404,
      body: expect.stringContaining("bad_host"),
    });
    await expect(openWebSocket(`${ws}/elsewhere`)).rejects.toMatchObject({ status: 404, body: expect.stringContaining("not_found") });
  });

  it("routes by host name with the path untouched, and can show the target the original Host", async () => {
    const ws = await openWebSocket(`ws://127.0.0.1:${relayPort}/ws/client/websocket`, { headers: { host: `crm.acme.relay.test:${relayPort}` } });
    ws.send("via host");
    expect((await nextMessage(ws)).data.toString()).toBe("via host");
    const seen = target.seen.at(-1)!;
    expect(seen.url).toBe("/ws/client/websocket");
    expect(seen.headers.host).toBe(`crm.acme.relay.test:${relayPort}`);
    expect(seen.headers["x-forwarded-prefix"]).toBeUndefined();
    ws.close();
  });

  it("works with Debian's python3-websockets as the target", async () => {
    const ws = await openWebSocket(`${relay.url.replace(/^http/, "ws")}/relay/acme/py/`);
    ws.send("snake");
    expect(await nextMessage(ws)).toEqual({ data: Buffer.from("snake"), binary: false });
    const bytes = randomBytes(300_000);
    ws.send(bytes);
    expect(sha((await nextMessage(ws)).data)).toBe(sha(bytes));
    ws.send("close");
    expect(await closed(ws)).toEqual({ code: 4002, reason: "python says bye" });
  });

  it("a slow reader holds the target back instead of Ferry buffering", async () => {
    const ws = await openWebSocket(`${base}/flood`);
    const socket = (ws as unknown as { _socket: import("node:net").Socket })._socket;
    socket.pause(); // the client stops reading
    ws.send("flood 128");
    const server = await until(() => target.seen.at(-1)?.url === "/flood").then(() => target.seen.at(-1)!.socket);
    // The target cannot hand most of its 128 MiB to the network: the relay and connector hold only their
    // windows (and the kernel its socket buffers, a few MiB per hop on loopback).
    await until(() => server.bufferedAmount > 96 * MiB);
    const received: number[] = [];
    const all = new Promise<void>((resolve) =>
      ws.on("message", (data: Buffer) => {
        received.push(data[0]!);
        if (received.length === 128) resolve();
      }),
    );
    socket.resume();
    await all;
    expect(received).toEqual(Array.from({ length: 128 }, (_, i) => i % 251));
    ws.close();
  });

  it("keeps an idle WebSocket open across many tunnel keepalive intervals", async () => {
    const ws = await openWebSocket(`${base}/idle`);
    // Idle for 10 keepalive intervals (200 ms here): nothing may time the upgraded connection out.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    ws.send("still here");
    expect((await nextMessage(ws)).data.toString()).toBe("still here");
    ws.close();
  });

  it("ends the target's connection when the client vanishes", async () => {
    const ws = await openWebSocket(`${base}/vanish`);
    const seen = target.seen.at(-1)!;
    ws.terminate(); // no close frame, just gone
    await until(() => seen.closed !== undefined);
    expect(seen.closed!.code).toBe(1006);
  });
});

function sha(b: Buffer): string {
  return createHash("sha256").update(b).digest("hex");
}
