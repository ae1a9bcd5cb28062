import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { HelloSchema } from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";
import { MAX_WINDOW, MIN_PROTOCOL_VERSION, MIN_WINDOW, PROTOCOL_VERSION } from "../../core/exchange/protocol.js";
import { GrpcStatus } from "../../services/http/grpc-status.js";
import { DEFAULT_LIMITS } from "../../services/limits/limits.js";
import { GrpcError } from "../../services/tunnel/grpc-call.js";
import { validateHello } from "../../services/tunnel/hello-check.js";
import { LimitRefusal } from "../../services/tunnel/tunnel-admission.js";

// Everything in a Hello is the connector's word: which ones the relay takes, and how it says no to the rest.

const limits = { ...DEFAULT_LIMITS, maxTargetsPerTunnel: 3 };
type HelloInit = MessageInitShape<typeof HelloSchema>;
const hello = (over: HelloInit = {}) =>
  create(HelloSchema, {
    protocolVersion: PROTOCOL_VERSION,
    connectorId: "plant-1",
    hostname: "erp-host",
    connectorVersion: "1.0.0",
    targets: [{ name: "erp" }],
    ...over,
  });
const targets = (...names: string[]) => names.map((name) => ({ name }));

describe("validateHello", () => {
  it.each<[string, HelloInit, number, RegExp]>([
    ["an older protocol", { protocolVersion: MIN_PROTOCOL_VERSION - 1 }, GrpcStatus.FAILED_PRECONDITION, /upgrade the connector$/],
    ["a newer protocol", { protocolVersion: PROTOCOL_VERSION + 1 }, GrpcStatus.FAILED_PRECONDITION, /upgrade the relay$/],
    ["no targets", { targets: [] }, GrpcStatus.INVALID_ARGUMENT, /^Hello lists no targets$/],
    ["a probe with targets", { probe: true }, GrpcStatus.INVALID_ARGUMENT, /^a probe Hello lists no targets$/],
    ["a target that is no DNS label", { targets: targets("erp", "Bad_Name") }, GrpcStatus.INVALID_ARGUMENT, /^target name "Bad_Name" is not a DNS label$/],
    ["too many exchanges", { maxConcurrentExchanges: 10_001 }, GrpcStatus.INVALID_ARGUMENT, /^max_concurrent_exchanges is above 10000$/],
    ["a window too small", { requestWindow: MIN_WINDOW - 1 }, GrpcStatus.INVALID_ARGUMENT, /^request_window must be between/],
    ["a window too large", { requestWindow: MAX_WINDOW + 1 }, GrpcStatus.INVALID_ARGUMENT, /^request_window must be between/],
    ["an over-long connector id", { connectorId: "x".repeat(129) }, GrpcStatus.INVALID_ARGUMENT, /over-long/],
    ["an over-long host name", { hostname: "x".repeat(256) }, GrpcStatus.INVALID_ARGUMENT, /over-long/],
    ["an over-long version", { connectorVersion: "x".repeat(65) }, GrpcStatus.INVALID_ARGUMENT, /over-long/],
    [
      "a leave time out of range",
      { status: { paused: false, leaveTime: { seconds: 10n ** 15n, nanos: 0 } } },
      GrpcStatus.INVALID_ARGUMENT,
      /^Hello status: leave_time is not a time within the next year$/,
    ],
  ])("refuses %s", (_name, over, status, message) => {
    let err: unknown;
    try {
      validateHello(hello(over), limits);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(GrpcError);
    expect((err as GrpcError).status).toBe(status);
    expect((err as GrpcError).message).toMatch(message);
  });

  it("refuses more targets than the limit as a limit (counted and audited as one)", () => {
    let err: unknown;
    try {
      validateHello(hello({ targets: targets("a", "b", "c", "d") }), limits);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LimitRefusal);
    expect(err).toMatchObject({ limit: "maxTargetsPerTunnel", reason: "too many targets" });
  });

  it.each<[string, HelloInit]>([
    ["an ordinary Hello", {}],
    ["a probe without targets", { probe: true, targets: [] }],
    ["exactly the target limit", { targets: targets("a", "b", "c") }],
    ["the window bounds", { requestWindow: MIN_WINDOW }],
    ["the largest window", { requestWindow: MAX_WINDOW }],
    ["the longest names", { connectorId: "x".repeat(128), hostname: "x".repeat(255), connectorVersion: "x".repeat(64) }],
  ])("takes %s", (_name, over) => {
    expect(validateHello(hello(over), limits).hello.connectorId).toBe(over.connectorId ?? "plant-1");
  });

  it("reads the status: paused, and a leave time within the year", () => {
    const leave = Math.floor(Date.now() / 1000) + 3600;
    const { status } = validateHello(
      hello({ status: { paused: true, leaveTime: { seconds: BigInt(leave), nanos: 0 } } }),
      limits,
    );
    expect(status).toEqual({ paused: true, leaveTime: new Date(leave * 1000) });
  });
});
