import { create, toBinary } from "@bufbuild/protobuf";
import { connect as natsConnect, type NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TunnelPresenceSchema } from "../../gen/ferry/cluster/v1/cluster_pb.js";
import { TUNNELS_BUCKET } from "../../services/cluster/subjects.js";
import { HostileConnector } from "../helpers/hostile-connector.js";
import { startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { type NatsServer, startNatsServer } from "../helpers/nats-server.js";
import { eventually, until } from "../helpers/wait.js";

// Finding 2: a leave time no Date can hold (seconds = 1e15), from a connector's Hello or status or from a
// record in the presence bucket, must not crash a cluster node, break ListConnectors or leave a zombie tunnel.
let nats: NatsServer;
let nc: NatsConnection;
let a: TestRelay;
let b: TestRelay;
let key: string;

const node = (nodeId: string) => startTestRelay({ nats: { servers: [nats.url] }, nodeId });
const far = { seconds: 10n ** 15n, nanos: 0 };

beforeAll(async () => {
  nats = await startNatsServer();
  [a, b] = await Promise.all([node("sa"), node("sb")]);
  nc = await natsConnect({ servers: nats.url });
  await a.admin.createTenant({ name: "acme" });
  ({ secret: key } = await a.admin.createKey({ tenant: "acme" }));
  await eventually(() => b.relay.catalog.getKey(key.split("_")[1]!) !== undefined, "key replicated");
});

afterAll(async () => {
  await nc?.close();
  await Promise.all([a, b].map((r) => r?.close()));
  await nats?.close();
});

/** ListConnectors for acme on both nodes: both must answer, and agree on the connector ids. */
async function connectorsEverywhere(): Promise<string[][]> {
  return Promise.all([a, b].map(async (r) => (await r.admin.listConnectors({ tenant: "acme" })).connectors.map((c) => c.connectorId)));
}

describe("out-of-range leave times", () => {
  it("refuses a Hello with one before any tunnel exists, and the node stays up", async () => {
    const c = await HostileConnector.open(a.url, key);
    c.hello({ connectorId: "bad-hello", status: { paused: false, leaveTime: far } });
    const end = await c.ended;
    expect(end.grpcStatus).toBe(3); // INVALID_ARGUMENT
    expect(end.grpcMessage).toMatch(/leave_time/);
    expect(c.welcome).toBeUndefined();
    expect(a.relay.registry.tunnels("acme")).toHaveLength(0);
    // A nanos field out of range, and a leave time long past, are refused the same way.
    for (const leaveTime of [{ seconds: 2_000_000_000n, nanos: 2_000_000_000 }, { seconds: 1n, nanos: 0 }]) {
      const d = await HostileConnector.open(a.url, key);
      d.hello({ connectorId: "bad-hello", status: { paused: false, leaveTime } });
      expect((await d.ended).grpcStatus).toBe(3);
    }
    expect(await connectorsEverywhere()).toEqual([[], []]);
  });

  it("ignores and counts a status with one; the tunnel, the node and ListConnectors on every node go on", async () => {
    const c = await HostileConnector.connect(a.url, key, { connectorId: "bad-status" });
    expect(c.welcome).toBeDefined();
    await eventually(async () => (await connectorsEverywhere()).every((ids) => ids.includes("bad-status")), "connector listed on both nodes");
    const faultsBefore = a.relay.faults.faults().get("connector\u0000invalid_status")?.count ?? 0;
    c.send({ case: "status", value: { $typeName: "ferry.tunnel.v1.ConnectorStatus", paused: true, leaveTime: { $typeName: "google.protobuf.Timestamp", ...far } } });
    await until(() => (a.relay.faults.faults().get("connector\u0000invalid_status")?.count ?? 0) > faultsBefore);
    const [tunnel] = a.relay.registry.tunnels("acme");
    expect(tunnel!.closed).toBe(false);
    expect(tunnel!.paused).toBe(false); // the whole message was ignored
    expect(tunnel!.leaveTime).toBeUndefined();
    // A valid status still applies.
    const leave = new Date(Date.now() + 3_600_000);
    c.send({
      case: "status",
      value: { $typeName: "ferry.tunnel.v1.ConnectorStatus", paused: false, leaveTime: { $typeName: "google.protobuf.Timestamp", seconds: BigInt(Math.floor(leave.getTime() / 1000)), nanos: 0 } },
    });
    await until(() => tunnel!.leaveTime !== undefined);
    // B hears of it through the presence bucket: the node that holds the tunnel published it, nothing threw.
    await eventually(async () => (await b.admin.listConnectors({ tenant: "acme" })).connectors[0]?.leaveTime !== undefined, "leave time on B");
    expect(await connectorsEverywhere()).toEqual([["bad-status"], ["bad-status"]]);
    c.destroy();
    await eventually(async () => (await connectorsEverywhere()).every((ids) => ids.length === 0), "connector gone on both nodes");
  });

  it("skips a hostile record in the presence bucket: ListConnectors answers on every node", async () => {
    const kv = await nc.jetstream().views.kv(TUNNELS_BUCKET);
    const hostile = create(TunnelPresenceSchema, {
      nodeId: "sa",
      tunnelId: "forged",
      tenant: "acme",
      connectorId: "forged",
      targets: ["app"],
      connectTime: far,
      leaveTime: far,
    });
    const junk = create(TunnelPresenceSchema, { nodeId: "sb", tunnelId: "junk", tenant: "acme", connectorId: "x".repeat(10_000), targets: ["Not A Label"] });
    await kv.put("sa.forged", toBinary(TunnelPresenceSchema, hostile));
    await kv.put("sb.junk", toBinary(TunnelPresenceSchema, junk));
    await kv.put("sa.garbage", new Uint8Array([0xff, 0xff, 0xff]));
    // Sane records written after them, one per node: once each node lists the other's, it has read the hostile ones too.
    const now = { seconds: BigInt(Math.floor(Date.now() / 1000)), nanos: 0 };
    for (const n of ["sa", "sb"]) {
      const sane = create(TunnelPresenceSchema, { nodeId: n, tunnelId: "sane", tenant: "acme", connectorId: `sane-${n}`, targets: ["app"], connectTime: now });
      await kv.put(`${n}.sane`, toBinary(TunnelPresenceSchema, sane));
    }
    await eventually(async () => (await connectorsEverywhere()).every((ids) => ids.length > 0), "sane records seen");
    expect(await connectorsEverywhere()).toEqual([["sane-sb"], ["sane-sa"]]);
    for (const k of ["sa.forged", "sb.junk", "sa.garbage", "sa.sane", "sb.sane"]) await kv.delete(k);
  });
});
