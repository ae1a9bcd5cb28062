import { create, equals, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { type Frame, FrameSchema, type Header } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { type ConnectRequest, ConnectRequestSchema, type ConnectResponse, ConnectResponseSchema } from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";
import { CodecError, decodeConnectRequest, decodeConnectResponse, encodeTunnelMessage } from "../../core/exchange/tunnel-codec.js";
import { fuzzSeed, type Rng, rng } from "../helpers/fuzz.js";

// The tunnel codec against random messages, mutations of valid encodings and plain garbage. It must write
// exactly the bytes protobuf-es writes for any valid message and read them back; on any input it either decodes
// or throws CodecError, and whatever it decodes it encodes as protobuf-es would. A body chunk is a view into
// the message only when it is a fair share of it (a small chunk must not keep a big message alive).

const CASES = 4000;

function text(r: Rng): string {
  return r.pick(["", "a", "app", "/a/ü/%20", "🚢", "x".repeat(300), "\u0000\r\n", String.fromCharCode(0xd800)].slice(0, 7)) + (r.chance(0.3) ? String(r.int(1e6)) : "");
}

const uint32 = (r: Rng) => r.pick([0, 1, 127, 128, 65_536, 2 ** 31, 2 ** 32 - 1, r.int(2 ** 32)]);
const int32 = (r: Rng) => r.pick([0, 1, -1, 2 ** 31 - 1, -(2 ** 31), r.int(2 ** 32) - 2 ** 31]);
const int64 = (r: Rng) => r.pick([0n, 1n, -1n, 100n, 2n ** 53n + 1n, 2n ** 63n - 1n, -(2n ** 63n), BigInt.asIntN(64, BigInt(r.int(2 ** 32)) * 4_000_000_000n)]);

function headers(r: Rng): Header[] {
  return Array.from({ length: r.int(4) }, () => ({ $typeName: "ferry.tunnel.v1.Header", name: text(r), value: text(r) }));
}

function frame(r: Rng): Frame {
  const kinds: Array<() => Frame["kind"]> = [
    () => ({
      case: "requestHead",
      value: {
        $typeName: "ferry.tunnel.v1.RequestHead",
        target: text(r),
        method: text(r),
        path: text(r),
        query: text(r),
        headers: headers(r),
        clientAddress: text(r),
        timeout: r.chance(0.5) ? { $typeName: "google.protobuf.Duration", seconds: int64(r), nanos: int32(r) } : undefined,
        upgrade: r.chance(0.5),
        endStream: r.chance(0.5),
        responseWindow: uint32(r),
        authority: text(r),
      },
    }),
    () => ({ case: "responseHead", value: { $typeName: "ferry.tunnel.v1.ResponseHead", status: uint32(r), headers: headers(r), endStream: r.chance(0.5) } }),
    () => ({ case: "data", value: { $typeName: "ferry.tunnel.v1.Data", chunk: r.bytes(r.pick([0, 1, 10, 300, 5000])) } }),
    () => ({ case: "end", value: { $typeName: "ferry.tunnel.v1.End", trailers: headers(r) } }),
    () => ({ case: "reset", value: { $typeName: "ferry.tunnel.v1.Reset", code: int32(r), message: text(r) } }),
    () => ({ case: "windowUpdate", value: { $typeName: "ferry.tunnel.v1.WindowUpdate", increment: uint32(r) } }),
    () => ({ case: undefined }),
  ];
  return create(FrameSchema, { exchangeId: r.bytes(r.pick([16, 16, 0, 3])), kind: r.pick(kinds)() });
}

const frames = (r: Rng) => ({ case: "frames" as const, value: { frames: Array.from({ length: r.int(6) }, () => frame(r)) } });

function request(r: Rng): ConnectRequest {
  const cases = [
    () => frames(r),
    () => ({
      case: "hello" as const,
      value: { protocolVersion: uint32(r), connectorId: text(r), connectorVersion: text(r), targets: [{ name: text(r) }], maxConcurrentExchanges: uint32(r), requestWindow: uint32(r), hostname: text(r) },
    }),
    () => ({ case: "ping" as const, value: { nonce: BigInt.asUintN(64, int64(r)) } }),
    () => ({ case: "pong" as const, value: { nonce: BigInt.asUintN(64, int64(r)) } }),
    () => ({ case: "goAway" as const, value: { reason: text(r) } }),
    () => ({ case: "status" as const, value: { paused: r.chance(0.5), leaveTime: r.chance(0.5) ? { seconds: int64(r), nanos: int32(r) } : undefined } }),
    () => ({ case: undefined }),
  ];
  return create(ConnectRequestSchema, { message: r.pick(cases)() as never });
}

function response(r: Rng): ConnectResponse {
  const cases = [
    () => frames(r),
    () => ({ case: "welcome" as const, value: { protocolVersion: uint32(r), tunnelId: text(r), nodeId: text(r), tenant: text(r), keepaliveInterval: { seconds: int64(r), nanos: int32(r) }, maxFrameSize: uint32(r) } }),
    () => ({ case: "ping" as const, value: { nonce: BigInt.asUintN(64, int64(r)) } }),
    () => ({ case: "goAway" as const, value: { reason: text(r) } }),
  ];
  return create(ConnectResponseSchema, { message: r.pick(cases)() as never });
}

/** A copy of `bytes` with a few random edits: flipped, replaced, inserted or removed bytes, truncation, 0xff runs. */
function mutate(r: Rng, bytes: Uint8Array): Uint8Array {
  let out = Buffer.from(bytes);
  for (let i = 0, n = 1 + r.int(4); i < n; i++) {
    const at = out.length ? r.int(out.length) : 0;
    switch (r.int(6)) {
      case 0:
        if (out.length) out[at] = out[at]! ^ (1 << r.int(8));
        break;
      case 1:
        if (out.length) out[at] = r.int(256);
        break;
      case 2:
        out = Buffer.concat([out.subarray(0, at), Buffer.from(r.bytes(1 + r.int(4))), out.subarray(at)]);
        break;
      case 3:
        out = Buffer.concat([out.subarray(0, at), out.subarray(at + 1 + r.int(4))]);
        break;
      case 4:
        out = out.subarray(0, at);
        break;
      default:
        out = Buffer.concat([out.subarray(0, at), Buffer.alloc(1 + r.int(11), 0xff), out.subarray(at)]);
    }
  }
  return out;
}

type Decoder = (bytes: Uint8Array) => ConnectRequest | ConnectResponse;

/** Decodes hostile bytes: CodecError is the only failure allowed, and what decodes must re-encode as protobuf-es would. */
function survives(decode: Decoder, schema: typeof ConnectRequestSchema | typeof ConnectResponseSchema, bytes: Uint8Array): string | undefined {
  let decoded: ConnectRequest | ConnectResponse;
  try {
    decoded = decode(bytes);
  } catch (e) {
    return e instanceof CodecError ? undefined : `threw ${String(e)} (not a CodecError)`;
  }
  const mine = encodeTunnelMessage(decoded);
  if (!Buffer.from(mine).equals(Buffer.from(toBinary(schema as typeof ConnectRequestSchema, decoded as ConnectRequest)))) return "decoded a message it then encodes differently from protobuf-es";
  if (decoded.message.case === "frames") {
    for (const f of decoded.message.value.frames) {
      if (f.kind.case !== "data") continue;
      const chunk = f.kind.value.chunk;
      // Views into buffers up to 128 KiB are allowed (their queue bounds what they pin); not into bigger ones.
      if (chunk.length > 0 && chunk.buffer === bytes.buffer && bytes.buffer.byteLength > 128 * 1024 && chunk.length < bytes.buffer.byteLength / 20) {
        return "a small chunk is a view into its whole message";
      }
    }
  }
  return undefined;
}

describe("tunnel codec fuzz", () => {
  it(`${CASES} random messages: byte-identical to protobuf-es both ways`, () => {
    const seed = fuzzSeed("codec round trip");
    const r = rng(seed);
    for (let i = 0; i < CASES; i++) {
      const toRelay = r.chance(0.5);
      const msg = toRelay ? request(r) : response(r);
      const schema = toRelay ? ConnectRequestSchema : ConnectResponseSchema;
      const theirs = toBinary(schema as typeof ConnectRequestSchema, msg as ConnectRequest);
      const mine = encodeTunnelMessage(msg);
      if (!Buffer.from(mine).equals(Buffer.from(theirs))) expect.fail(`FUZZ_SEED=${seed} case ${i}: encoding differs for ${msg.message.case}`);
      const decode: Decoder = toRelay ? decodeConnectRequest : decodeConnectResponse;
      // Also from inside a bigger buffer, as messages arrive from a socket or NATS.
      const inside = new Uint8Array(theirs.length + 20);
      inside.set(theirs, 7);
      for (const bytes of [mine, theirs, inside.subarray(7, 7 + theirs.length)]) {
        if (!equals(schema as typeof ConnectRequestSchema, decode(bytes) as ConnectRequest, msg as ConnectRequest)) {
          expect.fail(`FUZZ_SEED=${seed} case ${i}: ${msg.message.case} does not decode to what was encoded`);
        }
      }
    }
  });

  it(`${CASES} mutated and ${CASES} random inputs: decoded or CodecError, never anything else`, () => {
    const seed = fuzzSeed("codec mutations");
    const r = rng(seed);
    for (let i = 0; i < CASES; i++) {
      const toRelay = r.chance(0.5);
      const schema = toRelay ? ConnectRequestSchema : ConnectResponseSchema;
      const decode: Decoder = toRelay ? decodeConnectRequest : decodeConnectResponse;
      const valid = encodeTunnelMessage(toRelay ? request(r) : response(r));
      for (const bytes of [mutate(r, valid), r.bytes(r.int(64))]) {
        const problem = survives(decode, schema, bytes);
        if (problem) expect.fail(`FUZZ_SEED=${seed} case ${i}: ${problem}; input ${Buffer.from(bytes).toString("hex").slice(0, 400)}`);
      }
    }
  });

  it("copies a small chunk out of a big message, and keeps a bulk batch's chunks as views", () => {
    const id = new Uint8Array(16);
    const chunk = (n: number) => create(FrameSchema, { exchangeId: id, kind: { case: "data", value: { chunk: new Uint8Array(n) } } });
    const decodeFrames = (fs: Frame[]) => {
      const bytes = encodeTunnelMessage(create(ConnectRequestSchema, { message: { case: "frames", value: { frames: fs } } }));
      const m = decodeConnectRequest(bytes).message;
      return { bytes, chunks: m.case === "frames" ? m.value.frames.map((f) => (f.kind.value as { chunk: Uint8Array }).chunk) : [] };
    };
    const small = decodeFrames([chunk(1), chunk(1024 * 1024)]);
    expect(small.chunks[0]!.buffer).not.toBe(small.bytes.buffer);
    expect(small.chunks[0]!.buffer.byteLength).toBe(1);
    expect(small.chunks[1]!.buffer).toBe(small.bytes.buffer);
    const bulk = decodeFrames(Array.from({ length: 16 }, () => chunk(64 * 1024)));
    for (const c of bulk.chunks) expect(c.buffer).toBe(bulk.bytes.buffer);
  });
});
