import { once } from "node:events";
import { connect as http2Connect } from "node:http2";
import { afterEach, describe, expect, it } from "vitest";
import { makeTestPki } from "../helpers/certs.js";
import { startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { eventually } from "../helpers/wait.js";
import { clientHello, H2, H2_FLAGS, H2_PREFACE, h2Frame, h2Frames, h2RequestBlock, h2Setting, type RawPeer, rawPeer, within } from "./raw-peers.js";

// Findings 5 and 6 of issue 12: before, one address could hold any number of connections (4,000
// one-byte sockets were held) and one HTTP/2 connection any number of streams (900 open POSTs
// each). Connections over a cap are now destroyed at once, before TLS or sniffing, and counted;
// a trusted proxy (which carries many clients) is exempt from the per-address cap.
const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
const REFUSED_STREAM = 0x7;
/** A refused connection is closed at once; this only keeps a broken relay from hanging the test. */
const AT_ONCE_MS = 2_000;

let relays: TestRelay[] = [];
let peers: RawPeer[] = [];

afterEach(async () => {
  for (const p of peers) p.socket.destroy();
  peers = [];
  await Promise.all(relays.map((r) => r.close()));
  relays = [];
});

async function relayWith(options: Parameters<typeof startTestRelay>[0]): Promise<TestRelay> {
  const relay = await startTestRelay(options);
  relays.push(relay);
  return relay;
}

/** A keep-alive HTTP/1.1 connection that has had one answer: the relay has certainly accepted (and counted) it. */
async function served(url: string, localAddress?: string): Promise<RawPeer> {
  const peer = await rawPeer(url, localAddress);
  peers.push(peer);
  peer.socket.write("GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n");
  await new Promise<void>((resolve, reject) => {
    const check = () => {
      if (/\r\n\r\n\{.*\}/s.test(peer.received().toString("latin1"))) resolve();
    };
    peer.socket.on("data", check);
    void peer.closed.then(() => reject(new Error(`closed without an answer: ${peer.received().toString("latin1")}`)));
  });
  expect(peer.received().toString("latin1")).toMatch(/^HTTP\/1\.1 200 /);
  return peer;
}

/** Whether the relay answers a request on this new connection (true) or closes it (false). */
async function answers(peer: RawPeer): Promise<boolean> {
  peers.push(peer);
  peer.socket.write("GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n");
  return Promise.race([new Promise<boolean>((resolve) => peer.socket.once("data", () => resolve(true))), peer.closed.then(() => false)]);
}

/** A connection the relay must refuse: closed at once, without a byte. */
async function refused(url: string, localAddress?: string): Promise<void> {
  const peer = await rawPeer(url, localAddress);
  peers.push(peer);
  peer.socket.write("GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n");
  const { bytes } = await within(peer.closed, AT_ONCE_MS, "a connection over the cap");
  expect(bytes.length).toBe(0);
}

describe("connections per source address", () => {
  it("refuses the connection after maxConnectionsPerIp from one address; others still get in", async () => {
    const relay = await relayWith({ limits: { maxConnectionsPerIp: 3 } });
    for (let i = 0; i < 3; i++) await served(relay.url);
    await refused(relay.url);
    await served(relay.url, "127.0.0.2");
    expect(relay.relay.faults.limits().get("maxConnectionsPerIp")).toBe(1);
    // A closed connection gives its place back.
    const first = peers[0]!;
    first.socket.destroy();
    await first.closed;
    await eventually(async () => answers(await rawPeer(relay.url)), "a place freed by a closed connection", AT_ONCE_MS);
  });

  it("exempts trusted proxies", async () => {
    const relay = await relayWith({ limits: { maxConnectionsPerIp: 2 }, trustedProxies: ["127.0.0.1"] });
    for (let i = 0; i < 4; i++) await served(relay.url);
    await served(relay.url, "127.0.0.2");
    await served(relay.url, "127.0.0.2");
    await refused(relay.url, "127.0.0.2");
    expect(relay.relay.faults.limits().get("maxConnectionsPerIp")).toBe(1);
  });

  it("counts IPv4 clients of a dual-stack listener (::ffff:a.b.c.d) by their IPv4 address", async () => {
    const relay = await relayWith({ limits: { maxConnectionsPerIp: 1 }, trustedProxies: ["127.0.0.2"], listen: { host: "::" } });
    const url = `http://127.0.0.1:${relay.server.port}`;
    await served(url);
    await refused(url);
    await served(url, "127.0.0.2");
    await served(url, "127.0.0.2");
  });

  it("refuses TLS connections over the cap before their handshake", async () => {
    const pki = makeTestPki();
    const relay = await relayWith({ limits: { maxConnectionsPerIp: 1 }, tlsCert: pki.cert, tlsKey: pki.key, ca: pki.ca });
    const first = await rawPeer(relay.url);
    peers.push(first);
    // The first one's handshake starts (the relay answers its ClientHello), so it was admitted.
    first.socket.write(await clientHello());
    await once(first.socket, "data");
    const second = await rawPeer(relay.url);
    peers.push(second);
    second.socket.write(await clientHello());
    const { bytes } = await within(second.closed, AT_ONCE_MS, "a TLS connection over the cap");
    expect(bytes.length).toBe(0);
    expect(relay.relay.faults.limits().get("maxConnectionsPerIp")).toBe(1);
  });
});

describe("connections in all", () => {
  it("refuses the connection after maxConnections, whatever its address", async () => {
    const relay = await relayWith({ limits: { maxConnections: 4, maxConnectionsPerIp: 2 } });
    await served(relay.url);
    await served(relay.url);
    await served(relay.url, "127.0.0.2");
    await served(relay.url, "127.0.0.2");
    await refused(relay.url, "127.0.0.3");
    expect(relay.relay.faults.limits().get("maxConnections")).toBe(1);
    expect(relay.relay.faults.limits().get("maxConnectionsPerIp")).toBeUndefined();
  });
});

describe("streams per HTTP/2 connection", () => {
  it("announces maxStreamsPerConnection", async () => {
    const relay = await relayWith({ limits: { maxStreamsPerConnection: 3 } });
    const session = http2Connect(relay.url);
    await once(session, "remoteSettings");
    expect(session.remoteSettings.maxConcurrentStreams).toBe(3);
    session.close();
  });

  it("refuses the streams beyond it of a client that does not care", async () => {
    const relay = await relayWith({ limits: { maxStreamsPerConnection: 3 } });
    const peer = await rawPeer(relay.url);
    peers.push(peer);
    // Five requests at once, before the relay's SETTINGS could have been read, as a flood would send them.
    const requests = [1, 3, 5, 7, 9].map((id) => h2Frame(H2.HEADERS, H2_FLAGS.END_HEADERS | H2_FLAGS.END_STREAM, id, h2RequestBlock("/healthz")));
    peer.socket.write(Buffer.concat([H2_PREFACE, h2Frame(H2.SETTINGS, 0, 0), ...requests]));
    const resets = () => h2Frames(peer.received()).filter((f) => f.type === H2.RST_STREAM);
    await within(
      new Promise<void>((resolve) => {
        const check = () => {
          if (resets().length >= 2) resolve();
        };
        peer.socket.on("data", check);
      }),
      AT_ONCE_MS,
      "RST_STREAM for the streams beyond the limit",
    );
    const frames = h2Frames(peer.received());
    const settings = frames.find((f) => f.type === H2.SETTINGS && !(f.flags & H2_FLAGS.ACK));
    expect(h2Setting(settings!.payload, SETTINGS_MAX_CONCURRENT_STREAMS)).toBe(3);
    expect(resets().map((f) => [f.streamId, f.payload.readUInt32BE(0)])).toEqual([
      [7, REFUSED_STREAM],
      [9, REFUSED_STREAM],
    ]);
    // The three within the limit are served.
    await within(
      new Promise<void>((resolve) => {
        const check = () => {
          const answered = new Set(h2Frames(peer.received()).filter((f) => f.type === H2.HEADERS).map((f) => f.streamId));
          if ([1, 3, 5].every((id) => answered.has(id))) resolve();
        };
        check();
        peer.socket.on("data", check);
      }),
      AT_ONCE_MS,
      "answers to the streams within the limit",
    );
  });
});
