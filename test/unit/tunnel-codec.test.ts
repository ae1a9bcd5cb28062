import { create, equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { type Frame, FrameSchema, ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import {
  type ConnectRequest,
  ConnectRequestSchema,
  type ConnectResponse,
  ConnectResponseSchema,
} from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";
import { CodecError, decodeConnectRequest, decodeConnectResponse, encodeFramesGathered, encodeTunnelMessage } from "../../core/exchange/tunnel-codec.js";

// The hand-written codec must produce and accept exactly the bytes protobuf-es does for the same proto.

function frames(): Frame[] {
  const id = randomBytes(16);
  return [
    create(FrameSchema, {
      exchangeId: id,
      kind: {
        case: "requestHead",
        value: {
          target: "app",
          method: "POST",
          path: "/a/ü/%20",
          query: "x=1&y=ß",
          headers: [
            { name: "content-type", value: "text/plain; charset=utf-8" },
            { name: "x-empty", value: "" },
            { name: "x-emoji", value: "🚢" },
          ],
          clientAddress: "2001:db8::1",
          timeout: { seconds: 100n, nanos: 500_000_000 },
          upgrade: true,
          endStream: false,
          responseWindow: 524_288,
          authority: "app.acme.relay.example.com:8443",
        },
      },
    }),
    create(FrameSchema, { exchangeId: id, kind: { case: "requestHead", value: { method: "GET", path: "/", endStream: true } } }),
    create(FrameSchema, { exchangeId: id, kind: { case: "responseHead", value: { status: 200, headers: [{ name: "set-cookie", value: "a=1" }, { name: "set-cookie", value: "b=2" }], endStream: true } } }),
    create(FrameSchema, { exchangeId: id, kind: { case: "responseHead", value: {} } }),
    create(FrameSchema, { exchangeId: id, kind: { case: "data", value: { chunk: randomBytes(70_000) } } }),
    create(FrameSchema, { exchangeId: id, kind: { case: "data", value: { chunk: new Uint8Array(0) } } }),
    create(FrameSchema, { exchangeId: id, kind: { case: "end", value: { trailers: [{ name: "grpc-status", value: "0" }] } } }),
    create(FrameSchema, { exchangeId: id, kind: { case: "end", value: {} } }),
    create(FrameSchema, { exchangeId: id, kind: { case: "reset", value: { code: ResetCode.TARGET_UNREACHABLE, message: "refused" } } }),
    create(FrameSchema, { exchangeId: id, kind: { case: "windowUpdate", value: { increment: 0xffffffff } } }),
    create(FrameSchema, { exchangeId: new Uint8Array(0), kind: { case: undefined } }),
  ];
}

const requests: ConnectRequest[] = [
  create(ConnectRequestSchema, {
    message: {
      case: "hello",
      value: { protocolVersion: 1, connectorId: "c1", connectorVersion: "0.1.0", targets: [{ name: "app" }], maxConcurrentExchanges: 256, requestWindow: 1 << 19, hostname: "h", tunnelIndex: 1, status: { paused: false }, probe: true },
    },
  }),
  create(ConnectRequestSchema, { message: { case: "frames", value: { frames: frames() } } }),
  create(ConnectRequestSchema, { message: { case: "frames", value: { frames: [] } } }),
  create(ConnectRequestSchema, { message: { case: "ping", value: { nonce: 2n ** 63n + 5n } } }),
  create(ConnectRequestSchema, { message: { case: "pong", value: { nonce: 7n } } }),
  create(ConnectRequestSchema, { message: { case: "goAway", value: { reason: "bye" } } }),
  create(ConnectRequestSchema, { message: { case: "status", value: { paused: true, leaveTime: { seconds: 1_900_000_000n, nanos: 0 } } } }),
  create(ConnectRequestSchema, {}),
];

const responses: ConnectResponse[] = [
  create(ConnectResponseSchema, {
    message: { case: "welcome", value: { protocolVersion: 1, tunnelId: "t", nodeId: "n", tenant: "acme", keepaliveInterval: { seconds: 15n }, maxFrameSize: 65536, relayVersion: "0.1.0" } },
  }),
  create(ConnectResponseSchema, { message: { case: "frames", value: { frames: frames() } } }),
  create(ConnectResponseSchema, { message: { case: "goAway", value: { reason: "draining" } } }),
];

describe("tunnel codec", () => {
  it.each(requests.map((r) => [r.message.case ?? "empty", r] as const))("encodes a %s request exactly as protobuf-es does", (_, msg) => {
    const mine = encodeTunnelMessage(msg);
    expect(Buffer.from(mine).equals(Buffer.from(toBinary(ConnectRequestSchema, msg)))).toBe(true);
    expect(equals(ConnectRequestSchema, decodeConnectRequest(mine), msg)).toBe(true);
  });

  it.each(responses.map((r) => [r.message.case ?? "empty", r] as const))("encodes a %s response exactly as protobuf-es does", (_, msg) => {
    const mine = encodeTunnelMessage(msg);
    expect(Buffer.from(mine).equals(Buffer.from(toBinary(ConnectResponseSchema, msg)))).toBe(true);
    expect(equals(ConnectResponseSchema, decodeConnectResponse(toBinary(ConnectResponseSchema, msg)), msg)).toBe(true);
  });

  it("prefixes the gRPC message header on request", () => {
    const msg = requests[1]!;
    const framed = encodeTunnelMessage(msg, true);
    expect(framed[0]).toBe(0);
    expect(framed.readUInt32BE(1)).toBe(framed.length - 5);
    expect(equals(ConnectRequestSchema, fromBinary(ConnectRequestSchema, framed.subarray(5)), msg)).toBe(true);
  });

  it("writes a batch as pieces whose concatenation is the framed message, big chunks by reference", () => {
    const id = randomBytes(16);
    const data = (n: number) => create(FrameSchema, { exchangeId: id, kind: { case: "data", value: { chunk: randomBytes(n) } } });
    // A 16 KiB view of a 1 MiB buffer (1/64): copied, since a socket's queue would count it as 16 KiB and hold the 1 MiB.
    const pinning = create(FrameSchema, { exchangeId: id, kind: { case: "data", value: { chunk: Buffer.alloc(1 << 20, 3).subarray(5, 5 + 16 * 1024) } } });
    const batch = [...frames(), data(8 * 1024), data(8 * 1024 - 1), data(64 * 1024), pinning, data(64 * 1024), data(3)];
    const msg = create(ConnectResponseSchema, { message: { case: "frames", value: { frames: batch } } });
    const parts = encodeFramesGathered(batch);
    expect(Buffer.concat(parts).equals(encodeTunnelMessage(msg, true))).toBe(true);
    // 70,000, 8,192 and twice 65,536 bytes go as they are; 8,191, 3 and the view are copied in with the rest.
    const chunks = batch.flatMap((f) => (f.kind.case === "data" ? [f.kind.value.chunk] : []));
    const byReference = parts.filter((p) => chunks.some((c) => c.buffer === p.buffer && c.byteOffset === p.byteOffset));
    expect(byReference.map((p) => p.length)).toEqual([70_000, 8192, 65_536, 65_536]);
    expect(parts).toHaveLength(2 * byReference.length + 1);
    // Nothing big on its own: one frame batch of small frames is one buffer.
    expect(encodeFramesGathered([data(10)])).toHaveLength(1);
  });

  it("decodes body chunks as views into the message, without copying", () => {
    const bytes = encodeTunnelMessage(requests[1]!);
    const decoded = decodeConnectRequest(bytes);
    const data = decoded.message.case === "frames" ? decoded.message.value.frames[4]!.kind : undefined;
    expect(data?.case).toBe("data");
    expect((data!.value as { chunk: Uint8Array }).chunk.buffer).toBe(bytes.buffer);
  });

  it("copies a small chunk out of a big message (a padded one would keep megabytes alive for a byte)", () => {
    const chunk = Buffer.from("x");
    const frame: Frame = { $typeName: "ferry.tunnel.v1.Frame", exchangeId: new Uint8Array(16), kind: { case: "data", value: { $typeName: "ferry.tunnel.v1.Data", chunk } } };
    const message = encodeTunnelMessage({ $typeName: "ferry.tunnel.v1.ConnectRequest", message: { case: "frames", value: { $typeName: "ferry.tunnel.v1.FrameBatch", frames: [frame] } } });
    // The same frame followed by 1 MiB of an unknown field (27, bytes): what a hostile connector pads with.
    const padded = Buffer.concat([message, Buffer.from([0xda, 0x01, 0x80, 0x80, 0x40]), Buffer.alloc(1024 * 1024)]);
    const decoded = decodeConnectRequest(padded);
    const got = decoded.message.case === "frames" ? (decoded.message.value.frames[0]!.kind.value as { chunk: Uint8Array }).chunk : undefined;
    expect(Buffer.from(got!).toString()).toBe("x");
    expect(got!.buffer).not.toBe(padded.buffer);
    expect(got!.buffer.byteLength).toBe(1);
  });

  it("skips unknown fields like protobuf-es does", () => {
    const known = toBinary(ConnectRequestSchema, requests[4]!);
    const withUnknown = Buffer.concat([Buffer.from([0x78, 0x2a]), known, Buffer.from([0xa2, 0x06, 0x01, 0x00])]); // field 15 varint, field 100 bytes
    expect(equals(ConnectRequestSchema, decodeConnectRequest(withUnknown), requests[4]!)).toBe(true);
  });

  it.each([
    ["a truncated length", Buffer.from([0x12, 0x05, 0x0a])],
    ["a truncated varint", Buffer.from([0x12, 0x80])],
    ["a nested length past its field", Buffer.from([0x12, 0x03, 0x0a, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00])],
    ["an unsupported wire type", Buffer.from([0x0b])],
  ])("rejects %s with a CodecError", (_, bytes) => {
    expect(() => decodeConnectRequest(bytes)).toThrow(CodecError);
  });

  it("survives random garbage without crashing (it throws CodecError or decodes)", () => {
    for (let i = 0; i < 2000; i++) {
      const bytes = randomBytes(1 + (i % 64));
      try {
        decodeConnectRequest(bytes);
      } catch (e) {
        expect(e).toBeInstanceOf(CodecError);
      }
    }
  });
});
