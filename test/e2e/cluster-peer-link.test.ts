import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { connect as netConnect } from "node:net";
import { connect, type NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { HeartbeatSchema, PeerLinkHelloSchema, PeerLinkKind, PeerLinkVerdict, PeerLinkWelcomeSchema } from "../../gen/ferry/cluster/v1/cluster_pb.js";
import { freePort } from "../../bench/lib/tools.js";
import { splitHostPort } from "../../core/host-port.js";
import { download, request } from "../helpers/http.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { type NatsServer, startNatsServer } from "../helpers/nats-server.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp-proxy.js";
import { eventually } from "../helpers/wait.js";

// Two relay nodes with peer links (--peer-listen) on one nats-server, the connector on node b: frames go node to
// node over TCP; NATS carries only the open and the heartbeats. Node b is reached through a TCP proxy, so a
// test can break the link from a to b.
let nats: NatsServer;
let raw: NatsConnection;
let a: TestRelay;
let b: TestRelay;
let proxy: TcpProxy;
let target: TestTarget;
let connector: Connector;
/** The tenant's connector key. */
let secret: string;
/** Frame batches and route requests (opens) seen on NATS since the last reset. */
let natsFrames = 0;
let natsOpens = 0;

const here = { host: "127.0.0.1", port: 0 };

beforeAll(async () => {
  nats = await startNatsServer();
  raw = await connect({ servers: nats.url });
  raw.subscribe("ferry.frames.>", { callback: () => natsFrames++ });
  raw.subscribe("ferry.route.>", { callback: () => natsOpens++ });
  const bPort = await freePort();
  proxy = await startTcpProxy(bPort);
  [a, b] = await Promise.all([
    startTestRelay({ nats: { servers: [nats.url] }, nodeId: "a", peerListen: { listen: here, advertise: { host: "127.0.0.1" } } }),
    startTestRelay({ nats: { servers: [nats.url] }, nodeId: "b", peerListen: { listen: { ...here, port: bPort }, advertise: { host: "127.0.0.1", port: proxy.port } } }),
  ]);
  target = await startTestTarget();
  secret = await b.tenantWithKey("acme");
  connector = await startTestConnector(b.url, secret, { app: target.url });
  await eventually(async () => (await request(`${a.url}/relay/acme/app/echo`)).status === 200, "node a routes to the connector on b");
  await untilOverLinks("frames over the peer links");
}, 60_000);

afterAll(async () => {
  await connector?.stop();
  await Promise.all([a?.close(), b?.close()]);
  await proxy?.close();
  await target?.close();
  await raw?.close();
  await nats?.close();
});

/** Both links are up once a request crosses with neither its open nor a frame on NATS. */
function untilOverLinks(what: string): Promise<void> {
  return eventually(async () => {
    natsFrames = natsOpens = 0;
    const r = await request(`${a.url}/relay/acme/app/echo`);
    await raw.flush();
    return r.status === 200 && natsFrames === 0 && natsOpens === 0;
  }, what);
}

/** The link address a node announces in its heartbeat. */
async function announced(node: string): Promise<string> {
  const sub = raw.subscribe(`ferry.heartbeat.${node}`, { max: 1 });
  for await (const m of sub) return fromBinary(HeartbeatSchema, m.data).linkAddress;
  throw new Error("no heartbeat");
}

/** A message in gRPC's framing (uncompressed, 4-byte length), as a link carries it. */
function framed(bytes: Uint8Array): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(bytes.length, 1);
  return Buffer.concat([head, bytes]);
}

/** Sends `bytes` to a node's link address; what the node answered before it closed the connection, and whether it did. */
function sendToListener(address: string, bytes: Buffer): Promise<{ answer: Buffer; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = netConnect(splitHostPort(address));
    socket.on("error", reject);
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("close", () => resolve({ answer: Buffer.concat(chunks), closed: true }));
    socket.write(bytes);
  });
}

/** The verdict of a node's welcome (the one message it answers a hello with), or undefined for none. */
const verdictOf = (answer: Buffer): PeerLinkVerdict | undefined =>
  answer.length < 5 ? undefined : fromBinary(PeerLinkWelcomeSchema, answer.subarray(5, 5 + answer.readUInt32BE(1))).verdict;

describe("peer links between relay nodes", () => {
  it("opens exchanges and carries bodies both ways node to node, nothing of them on NATS", async () => {
    natsFrames = natsOpens = 0;
    const down = await download(`${a.url}/relay/acme/app/bytes?size=${8 * 1024 * 1024}`);
    expect(down).toMatchObject({ status: 200, bytes: 8 * 1024 * 1024 });
    const body = Buffer.alloc(3 * 1024 * 1024, 7);
    const up = await request(`${a.url}/relay/acme/app/sink`, { method: "POST", body });
    expect(up.status).toBe(200);
    expect(JSON.parse(up.body.toString()).bytes).toBe(body.length);
    await raw.flush();
    expect(natsFrames).toBe(0);
    expect(natsOpens).toBe(0);
  });

  it("opens over NATS when the node holding the tunnel is not linked back, and carries the frames over the link", async () => {
    // A third node without --peer-listen: it links to a and b, but nobody links to it, so no answer could come back.
    const c = await startTestRelay({ nats: { servers: [nats.url] }, nodeId: "c" });
    try {
      await eventually(async () => (await request(`${c.url}/relay/acme/app/echo`)).status === 200, "node c routes to b");
      natsFrames = natsOpens = 0;
      const down = await download(`${c.url}/relay/acme/app/bytes?size=${1024 * 1024}`);
      expect(down).toMatchObject({ status: 200, bytes: 1024 * 1024 });
      await raw.flush();
      expect(natsOpens).toBe(1);
      // Its request frames went over its link to b; b's answers to c over NATS.
      expect(natsFrames).toBeGreaterThan(0);
    } finally {
      await c.close();
    }
  });

  it("announces where each node takes links, with a token digest and never the token", async () => {
    expect(await announced("a")).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(await announced("b")).toBe(`127.0.0.1:${proxy.port}`);
    const sub = raw.subscribe("ferry.heartbeat.a", { max: 1 });
    for await (const m of sub) expect(fromBinary(HeartbeatSchema, m.data).peerTokenDigest).toHaveLength(32);
  });

  it("fails an exchange at once when its link breaks, and the next one passes", async () => {
    const hanging = request(`${a.url}/relay/acme/app/hang`);
    // The request reached the target through the link.
    await eventually(() => target.seen.some((r) => r.url === "/hang"), "request at the target");
    proxy.cut();
    const reply = await hanging;
    expect(reply.status).toBe(502);
    expect(reply.body.toString()).toMatch(/link to relay node b broke/);
    // Over NATS until the link is back, then over the link again: either way the next request passes.
    expect((await request(`${a.url}/relay/acme/app/echo`)).status).toBe(200);
    await untilOverLinks("the link is back");
  });

  it("refuses a link without the token its node announces, or anything that is not a hello, before reading a frame", async () => {
    const address = await announced("a");
    const ask = async (init: Record<string, unknown>) => {
      // A frame batch right behind the hello: never read when the hello is refused.
      const hello = framed(toBinary(PeerLinkHelloSchema, create(PeerLinkHelloSchema, init)));
      const { answer, closed } = await sendToListener(address, Buffer.concat([hello, framed(Buffer.from([0x12, 0]))]));
      return { verdict: verdictOf(answer), closed };
    };
    const faults = (reason: string) => [...a.relay.faults.faults().values()].find((f) => f.source === "cluster" && f.reason === reason)?.count ?? 0;
    // b is a node a knows, but this is not b's token.
    expect(await ask({ nodeId: "b", token: "not-the-token", kind: PeerLinkKind.REQUESTS })).toEqual({ verdict: PeerLinkVerdict.REFUSED, closed: true });
    expect(await ask({ nodeId: "b", kind: PeerLinkKind.REQUESTS })).toEqual({ verdict: PeerLinkVerdict.REFUSED, closed: true });
    // A node a has never heard of: try again later (a node that just started is dialled before it is heard).
    expect(await ask({ nodeId: "nobody", token: "x", kind: PeerLinkKind.REQUESTS })).toEqual({ verdict: PeerLinkVerdict.UNKNOWN_NODE, closed: true });
    expect(await ask({ nodeId: "b", token: "x", kind: 9 })).toEqual({ verdict: PeerLinkVerdict.REFUSED, closed: true });
    // What a node of an earlier version sends (an HTTP/2 preface), and a "hello" past any hello's size.
    expect(verdictOf((await sendToListener(address, Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))).answer)).toBe(PeerLinkVerdict.REFUSED);
    const huge = Buffer.alloc(5);
    huge.writeUInt32BE(64 * 1024, 1);
    expect(verdictOf((await sendToListener(address, huge)).answer)).toBe(PeerLinkVerdict.REFUSED);
    expect(faults("peer link with a bad token")).toBe(2);
    expect(faults("peer link with a bad node or kind")).toBe(1);
    expect(faults("peer link message not in its framing")).toBe(1);
    expect(faults("peer link message too large")).toBe(1);
    // The real links still work.
    natsFrames = 0;
    expect((await request(`${a.url}/relay/acme/app/echo`)).status).toBe(200);
    await raw.flush();
    expect(natsFrames).toBe(0);
  });

  it("closes connections that keep quiet, and takes no more than four of them from one address", async () => {
    const address = await announced("a");
    const dial = () =>
      new Promise<{ closed: Promise<number> }>((resolve, reject) => {
        const t0 = Date.now();
        const socket = netConnect(splitHostPort(address), () =>
          resolve({ closed: new Promise((done) => socket.on("close", () => done(Date.now() - t0))) }),
        );
        socket.on("error", () => {});
        socket.once("error", reject);
      });
    const quiet = await Promise.all([dial(), dial(), dial(), dial()]);
    const fifth = await dial();
    // The fifth is closed at once; the four when their 3 s to say hello are up.
    expect(await fifth.closed).toBeLessThan(2000);
    for (const ms of await Promise.all(quiet.map((q) => q.closed))) expect(ms).toBeGreaterThanOrEqual(2900);
    expect([...a.relay.faults.faults().values()].find((f) => f.reason === "too many peer link connections without a hello")?.count).toBe(1);
    natsFrames = 0;
    expect((await request(`${a.url}/relay/acme/app/echo`)).status).toBe(200);
    await raw.flush();
    expect(natsFrames).toBe(0);
  });

  // Last: it leaves b with a busy connector. A GET's head goes behind its link open before the accept; a node that
  // refuses the open drops it, and the node that takes the exchange over NATS must get it, once.
  it("sends a GET's head behind the link open, and once more to the node that takes it after a refusal", async () => {
    const c = await startTestRelay({ nats: { servers: [nats.url] }, nodeId: "c", peerListen: { listen: here, advertise: { host: "127.0.0.1" } } });
    const onC = await startTestConnector(c.url, secret, { app: target.url });
    try {
      await connector.stop();
      // b's only connector takes one exchange at a time, and the one it has never ends.
      connector = await startTestConnector(b.url, secret, { app: target.url }, { maxConcurrent: 1, tunnels: 1 });
      await eventually(async () => (await request(`${b.url}/relay/acme/app/echo`)).status === 200, "b's connector is up");
      const hanging = request(`${b.url}/relay/acme/app/hang?busy`);
      await eventually(() => target.seen.some((r) => r.url === "/hang?busy"), "b's connector is busy");
      await eventually(async () => (await request(`${a.url}/relay/acme/app/echo`)).status === 200, "a routes to c too");
      natsOpens = 0;
      const outcomes: number[] = [];
      for (let i = 0; i < 20; i++) {
        const r = await request(`${a.url}/relay/acme/app/echo?pipelined=${i}`);
        outcomes.push(r.status);
        const seen = target.seen.filter((s) => s.url === `/echo?pipelined=${i}`).length;
        // 503 connector_busy: every ask of it went to b (three in a row, 1 in 8); then the target never saw it.
        expect(r.status === 200 ? seen : r.status === 503 && /connector_busy/.test(r.body.toString()) ? seen + 1 : -1).toBe(1);
      }
      await raw.flush();
      // Opens that b refused over its link went on over NATS (those c accepted over its link did not).
      expect(natsOpens).toBeGreaterThan(0);
      expect(outcomes.filter((s) => s === 200).length).toBeGreaterThanOrEqual(10);
      hanging.catch(() => {});
    } finally {
      await onC.stop();
      await c.close();
    }
  });
});
