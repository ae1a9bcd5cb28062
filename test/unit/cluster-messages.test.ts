import { create, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  DisconnectRequestSchema,
  HeartbeatSchema,
  OpenExchangeSchema,
  OpenResultSchema,
  PeerLinkHelloSchema,
  PeerLinkKind,
  PeerLinkVerdict,
  PeerLinkWelcomeSchema,
} from "../../gen/ferry/cluster/v1/cluster_pb.js";
import { FerryError } from "../../core/errors.js";
import { readBeat, readDisconnectRequest, readHeartbeat, readLinkHello, readLinkWelcome, readOpenExchange, readOpenResult } from "../../services/cluster/cluster-messages.js";

// What a node accepts from NATS, message by message: a value it may use, or the fixed reason it is dropped for.

const open = (init: Parameters<typeof create<typeof OpenExchangeSchema>>[1]) =>
  readOpenExchange(toBinary(OpenExchangeSchema, create(OpenExchangeSchema, { exchangeId: new Uint8Array(16), tenant: "acme", target: "app", ingressNode: "a", ...init })));
const result = (init: Parameters<typeof create<typeof OpenResultSchema>>[1]) => readOpenResult(toBinary(OpenResultSchema, create(OpenResultSchema, init)));
const accepted = (init: Record<string, unknown>) => result({ result: { case: "accepted", value: { egressNode: "b", requestWindow: 512 * 1024, maxFrameSize: 65536, ...init } } });
const refused = (init: Record<string, unknown>) => result({ result: { case: "refused", value: { kind: "unavailable", code: "connector_busy", message: "busy", ...init } } });

describe("cluster messages from NATS", () => {
  it("takes a well-formed OpenExchange, with its id copied out of the NATS buffer", () => {
    const bytes = toBinary(OpenExchangeSchema, create(OpenExchangeSchema, { exchangeId: new Uint8Array(16).fill(1), tenant: "acme", target: "app", ingressNode: "node-1" }));
    const r = readOpenExchange(bytes);
    expect(r.ok).toBe(true);
    expect(r.ok && r.value.exchangeId.buffer).not.toBe(bytes.buffer);
  });

  it.each([
    ["garbage", () => readOpenExchange(Buffer.from([0x0a, 0x09]))],
    ["a 15-byte id", () => open({ exchangeId: new Uint8Array(15) })],
    ["a tenant that is not a DNS label", () => open({ tenant: "Acme.x" })],
    ["a target with a wildcard", () => open({ target: ">" })],
    ["an ingress node id with a dot", () => open({ ingressNode: "a.b" })],
    ["an empty ingress node id", () => open({ ingressNode: "" })],
  ])("refuses an OpenExchange with %s", (_, read) => {
    expect(read().ok).toBe(false);
  });

  it("takes an Accepted in range and a Refused of a known kind, as the FerryError the client gets", () => {
    expect(accepted({}).ok).toBe(true);
    expect(accepted({ maxFrameSize: 0 }).ok).toBe(true);
    const r = refused({ retryAfterSeconds: 5 });
    expect(r.ok && r.value instanceof FerryError && [r.value.kind, r.value.code, r.value.extra.retryAfterSeconds]).toEqual(["unavailable", "connector_busy", 5]);
  });

  it.each([
    ["an egress node id that would be a wildcard subject", () => accepted({ egressNode: "x.>" })],
    ["a window of 0", () => accepted({ requestWindow: 0 })],
    ["a window past the protocol's", () => accepted({ requestWindow: 2 ** 32 - 1 })],
    ["a frame size of 1", () => accepted({ maxFrameSize: 1 })],
    ["a kind no status exists for", () => refused({ kind: "bogus" })],
    ["a prototype property as kind", () => refused({ kind: "constructor" })],
    ["a code with spaces", () => refused({ code: "not a code" })],
    ["a huge Retry-After", () => refused({ retryAfterSeconds: 2 ** 31 })],
    ["a message of 100 KB", () => refused({ message: "x".repeat(100_000) })],
    ["neither", () => result({})],
  ])("refuses an OpenResult with %s", (_, read) => {
    expect(read().ok).toBe(false);
  });

  it("believes a heartbeat only for the node its subject names", () => {
    const hb = (nodeId: string) => toBinary(HeartbeatSchema, create(HeartbeatSchema, { nodeId }));
    expect(readHeartbeat("ferry.heartbeat.a", hb("a"))).toEqual({ ok: true, value: "a" });
    expect(readHeartbeat("ferry.heartbeat.a", hb("b")).ok).toBe(false);
    expect(readHeartbeat("ferry.heartbeat.a", Buffer.from([0xff])).ok).toBe(false);
    expect(readHeartbeat(`ferry.heartbeat.${"x".repeat(65)}`, hb("x".repeat(65))).ok).toBe(false);
  });

  it("takes a heartbeat's link address only as HOST:PORT, ignores the old peer url, and a digest only of 32 bytes", () => {
    const beat = (init: Record<string, unknown>) => readBeat("ferry.heartbeat.a", toBinary(HeartbeatSchema, create(HeartbeatSchema, { nodeId: "a", ...init })));
    const digest = new Uint8Array(32).fill(9);
    expect(beat({ linkAddress: "10.0.0.5:7443", peerTokenDigest: digest })).toEqual({
      ok: true,
      value: { node: "a", draining: false, linkAddress: "10.0.0.5:7443", peerTokenDigest: digest },
    });
    expect(beat({ linkAddress: "[fd00::5]:7443" }).ok).toBe(true);
    expect(beat({ linkAddress: "relay-b.internal:7443" }).ok).toBe(true);
    expect(beat({}).ok).toBe(true);
    // A node of an earlier version announces an HTTP/2 peer url: no link to it, its heartbeat still counts.
    expect(beat({ peerUrl: "http://10.0.0.5:7443" })).toMatchObject({ ok: true, value: { linkAddress: "" } });
    for (const linkAddress of ["http://10.0.0.5:7443", "10.0.0.5", "user@10.0.0.5:1", "10.0.0.5:1/path", "a b:1", `${"x".repeat(300)}:1`, "fd00::5:1", "10.0.0.5:99999", "10.0.0.5:0"]) {
      expect(beat({ linkAddress })).toEqual({ ok: false, reason: "heartbeat with a bad link address" });
    }
    expect(beat({ peerTokenDigest: new Uint8Array(31) })).toEqual({ ok: false, reason: "heartbeat with a bad peer token digest" });
  });

  it("reads a peer link's hello and welcome, refusing bad node ids, kinds and reasons", () => {
    const hello = (init: Record<string, unknown>) => readLinkHello(toBinary(PeerLinkHelloSchema, create(PeerLinkHelloSchema, init)));
    expect(hello({ nodeId: "b", token: "t", kind: PeerLinkKind.REQUESTS })).toEqual({ ok: true, value: { node: "b", token: "t", kind: "req" } });
    expect(hello({ nodeId: "b", token: "t", kind: PeerLinkKind.RESPONSES })).toMatchObject({ ok: true, value: { kind: "res" } });
    expect(hello({ nodeId: "b", token: "t" })).toEqual({ ok: false, reason: "peer link with a bad node or kind" });
    expect(hello({ nodeId: "b", token: "t", kind: 7 })).toEqual({ ok: false, reason: "peer link with a bad node or kind" });
    expect(hello({ nodeId: "b.c", token: "t", kind: PeerLinkKind.REQUESTS })).toEqual({ ok: false, reason: "peer link with a bad node or kind" });
    expect(hello({ nodeId: "b", token: "t".repeat(257), kind: PeerLinkKind.REQUESTS })).toEqual({ ok: false, reason: "peer link with a bad token" });
    expect(readLinkHello(Buffer.from([0xff, 0xff]))).toEqual({ ok: false, reason: "malformed peer link hello" });
    const welcome = (init: Record<string, unknown>) => readLinkWelcome(toBinary(PeerLinkWelcomeSchema, create(PeerLinkWelcomeSchema, init)));
    expect(welcome({ verdict: PeerLinkVerdict.ACCEPTED })).toMatchObject({ ok: true, value: { verdict: PeerLinkVerdict.ACCEPTED, reason: "" } });
    expect(welcome({ verdict: PeerLinkVerdict.REFUSED, reason: "bad\ntoken" })).toEqual({ ok: false, reason: "peer link welcome with a bad reason" });
    expect(welcome({ verdict: PeerLinkVerdict.REFUSED, reason: "x".repeat(1025) }).ok).toBe(false);
  });

  it("checks a DisconnectRequest's tenant, connector id and reason", () => {
    const req = (init: Record<string, unknown>) =>
      readDisconnectRequest(toBinary(DisconnectRequestSchema, create(DisconnectRequestSchema, { tenant: "acme", connectorId: "hq-1", reason: "rotated", ...init })));
    expect(req({}).ok).toBe(true);
    expect(req({ tenant: "../etc" }).ok).toBe(false);
    expect(req({ connectorId: "" }).ok).toBe(false);
    expect(req({ connectorId: "x".repeat(129) }).ok).toBe(false);
    expect(req({ reason: "a\nforged log line" }).ok).toBe(false);
    expect(req({ reason: "r".repeat(2000) }).ok).toBe(false);
  });
});
