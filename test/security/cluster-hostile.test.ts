import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { connect, type NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WebSocket } from "ws";
import type { Connector } from "../../clients/connector/connector.js";
import { encodeTunnelMessage } from "../../core/exchange/tunnel-codec.js";
import {
  DisconnectRequestSchema,
  HeartbeatSchema,
  OpenExchangeSchema,
  OpenResultSchema,
} from "../../gen/ferry/cluster/v1/cluster_pb.js";
import { HostileConnector } from "../helpers/hostile-connector.js";
import { request } from "../helpers/http.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { type NatsServer, startNatsServer } from "../helpers/nats-server.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { eventually } from "../helpers/wait.js";
import { nextMessage, openWebSocket, startWebSocketTarget, type WebSocketTarget } from "../helpers/websocket-targets.js";

// Whoever can publish on the cluster's NATS subjects, and whatever a connector on another node sends through them:
// a bad message costs at most its own exchange. The nodes stay up and connected (a WebSocket carried across them
// the whole time survives: a NATS reconnect would have failed it), requests keep working, and each bad message counts.

let nats: NatsServer;
let a: TestRelay;
let b: TestRelay;
let target: TestTarget;
let chat: WebSocketTarget;
let conn: Connector;
let attacker: NatsConnection;
let witness: WebSocket;

const node = (nodeId: string) => startTestRelay({ nats: { servers: [nats.url] }, nodeId });

/** Cluster faults counted on a node, by reason. */
function clusterFaults(r: TestRelay): Map<string, number> {
  const out = new Map<string, number>();
  for (const f of r.relay.faults.faults().values()) if (f.source === "cluster") out.set(f.reason, f.count);
  return out;
}

async function tenant(name: string): Promise<string> {
  await a.admin.createTenant({ name });
  const { secret } = await a.admin.createKey({ tenant: name });
  await eventually(() => b.relay.catalog.getKey(secret.split("_")[1]!) !== undefined && a.relay.catalog.getTenant(name) !== undefined, "key on b");
  return secret;
}

/** The witness still echoes: its exchange crosses a -> NATS -> b and would have failed on any NATS reconnect. */
async function witnessEchoes(text: string): Promise<void> {
  witness.send(text);
  expect((await nextMessage(witness)).data.toString()).toBe(text);
}

beforeAll(async () => {
  nats = await startNatsServer();
  [a, b] = await Promise.all([node("a"), node("b")]);
  target = await startTestTarget("t");
  chat = await startWebSocketTarget();
  const key = await tenant("acme");
  conn = await startTestConnector(b.url, key, { app: target.url, chat: chat.url });
  await eventually(async () => (await a.admin.listConnectors({ tenant: "acme" })).connectors.length === 1, "connector visible on a");
  witness = await openWebSocket(`${a.url.replace(/^http/, "ws")}/relay/acme/chat/ws`);
  await witnessEchoes("before");
  attacker = await connect({ servers: nats.url });
});

afterAll(async () => {
  witness?.close();
  await attacker?.close();
  await conn?.stop();
  await Promise.all([a, b].map((r) => r?.close()));
  await target?.close();
  await chat?.close();
  await nats?.close();
});

describe("a cluster against hostile NATS traffic", () => {
  it("drops garbage on every subject it reads, counts it, and goes on", async () => {
    const truncated = Buffer.from([0x12, 0x05, 0x0a]);
    for (const n of ["a", "b"]) {
      attacker.publish(`ferry.frames.${n}.req`, truncated);
      attacker.publish(`ferry.frames.${n}.res`, truncated);
      // Well-formed, but not frames; then frames for exchanges nobody has.
      attacker.publish(`ferry.frames.${n}.res`, encodeTunnelMessage({ $typeName: "ferry.tunnel.v1.ConnectResponse", message: { case: "goAway", value: { $typeName: "ferry.tunnel.v1.GoAway", reason: "x" } } }));
      attacker.publish(
        `ferry.frames.${n}.req`,
        encodeTunnelMessage({
          $typeName: "ferry.tunnel.v1.ConnectResponse",
          message: { case: "frames", value: { $typeName: "ferry.tunnel.v1.FrameBatch", frames: [HostileConnector.data(new Uint8Array(16), Buffer.from("x")), HostileConnector.end(new Uint8Array(3))] } },
        }),
      );
      attacker.publish(`ferry.control.${n}`, truncated);
      attacker.publish(`ferry.control.${n}`, toBinary(DisconnectRequestSchema, create(DisconnectRequestSchema, { tenant: "../x", connectorId: "c", reason: "r" })));
      // Claims to be the other node.
      attacker.publish(`ferry.heartbeat.${n}`, toBinary(HeartbeatSchema, create(HeartbeatSchema, { nodeId: n === "a" ? "b" : "a" })));
    }
    attacker.publish("ferry.heartbeat.zz", truncated);
    // b serves ferry.route.acme.app: bad asks get an answer at once, and no exchange.
    const answers = await Promise.all(
      [
        truncated,
        toBinary(OpenExchangeSchema, create(OpenExchangeSchema, { exchangeId: new Uint8Array(3), tenant: "acme", target: "app", ingressNode: "a" })),
        toBinary(OpenExchangeSchema, create(OpenExchangeSchema, { exchangeId: new Uint8Array(16), tenant: "acme", target: "app", ingressNode: "x.>" })),
      ].map(async (ask) => (await attacker.request("ferry.route.acme.app", ask, { timeout: 2_000 })).data),
    );
    for (const answer of answers) {
      const result = fromBinary(OpenResultSchema, answer).result;
      expect(result.case).toBe("refused");
      expect(result.value).toMatchObject({ code: "bad_open_exchange" });
    }

    await eventually(() => clusterFaults(a).size >= 5 && clusterFaults(b).size >= 5, "faults counted");
    for (const r of [a, b]) {
      expect([...clusterFaults(r).keys()]).toEqual(
        expect.arrayContaining(["malformed frame batch", "message without frames on a frames subject", "malformed disconnect request", "disconnect request with a bad tenant or connector id", "heartbeat for another node"]),
      );
    }
    expect([...clusterFaults(b).keys()]).toEqual(expect.arrayContaining(["malformed open exchange", "open exchange with a bad exchange id", "open exchange with a bad node id"]));
    await witnessEchoes("after garbage");
    for (const via of [a, b]) {
      const r = await request(`${via.url}/relay/acme/app/echo`, { method: "POST", body: Buffer.from(`via ${via.relay.nodeId}`) });
      expect(r.body.toString()).toBe(`via ${via.relay.nodeId}`);
    }
  });

  it("answers 503 when whoever takes an exchange answers with a refusal or an accept it cannot use", async () => {
    await tenant("evil");
    // The only responder for this target is the attacker.
    const lies = [
      create(OpenResultSchema, { result: { case: "refused", value: { kind: "bogus", code: "x", message: "m" } } }),
      create(OpenResultSchema, { result: { case: "refused", value: { kind: "unavailable", code: "busy", message: "m", retryAfterSeconds: 4_000_000_000 } } }),
      create(OpenResultSchema, { result: { case: "accepted", value: { egressNode: "x.>", requestWindow: 512 * 1024 } } }),
      create(OpenResultSchema, { result: { case: "accepted", value: { egressNode: "b", requestWindow: 0 } } }),
      create(OpenResultSchema, {}),
    ];
    let next = 0;
    const sub = attacker.subscribe("ferry.route.evil.app", { queue: "ferry-route", callback: (_err, msg) => msg.respond(toBinary(OpenResultSchema, lies[next++ % lies.length]!)) });
    await attacker.flush();
    try {
      for (let i = 0; i < lies.length; i++) {
        const r = await request(`${a.url}/relay/evil/app/x`);
        expect(r.status).toBe(503);
        expect(JSON.parse(r.body.toString()).error.code).toBe("cluster_unavailable");
      }
    } finally {
      sub.unsubscribe();
    }
    expect([...clusterFaults(a).keys()]).toEqual(
      expect.arrayContaining(["refusal with an unknown kind or code", "refusal out of range", "accept with a bad node id", "accept with a bad window", "empty open result"]),
    );
    await witnessEchoes("after lies");
  });

  it("a connector on another node cannot break the node where the client is", async () => {
    const key = await tenant("rogue");
    const c = await HostileConnector.connect(b.url, key);
    try {
      await eventually(async () => (await a.admin.listConnectors({ tenant: "rogue" })).connectors.length === 1, "rogue visible on a");
      // Trailers no HTTP/1.1 client can be sent (the gateway may drop them or fail the response, never the node),
      // then frames a connector may not send: a chunk past the frame limit, data after the end.
      const answers = [
        (id: Uint8Array) => c.respond(id, 200, [["content-type", "text/plain"]], "body", [["bad name", "x"], ["x-crlf", "a\r\nb"], [":status", "1"]]),
        (id: Uint8Array) => c.sendFrames([HostileConnector.responseHead(id, 200, []), HostileConnector.data(id, Buffer.alloc(70_000))]),
        (id: Uint8Array) => c.sendFrames([HostileConnector.responseHead(id, 200, [], true), HostileConnector.data(id, Buffer.from("late"))]),
      ];
      for (const answer of answers) {
        const reply = request(`${a.url}/relay/rogue/app/x`).catch((e: unknown) => e);
        const ex = await c.nextRequest(c.frames().length);
        answer(ex!.id);
        await reply;
        await witnessEchoes("after a rogue answer");
      }
    } finally {
      c.destroy();
    }
    const r = await request(`${a.url}/relay/acme/app/echo`, { method: "POST", body: Buffer.from("still here") });
    expect(r.body.toString()).toBe("still here");
    expect((await request(`${a.url}/readyz`)).status).toBe(200);
  });
});
