import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ConnectorStatusSchema } from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";
import { checkStatus, LEAVE_TIME_MAX_AHEAD_MS, LEAVE_TIME_MAX_BEHIND_MS } from "../../services/tunnel/connector-status.js";

const now = Date.UTC(2026, 11, 1);
const at = (ms: number, nanos = 0) => create(ConnectorStatusSchema, { paused: true, leaveTime: { seconds: BigInt(Math.floor(ms / 1000)), nanos } });

describe("checkStatus", () => {
  it.each([
    ["no status", undefined, { paused: false, leaveTime: undefined }],
    ["paused, no leave time", create(ConnectorStatusSchema, { paused: true }), { paused: true, leaveTime: undefined }],
    ["in an hour", at(now + 3_600_000, 500_000_000), { paused: true, leaveTime: new Date(now + 3_600_500) }],
    ["a year ahead, to the second", at(now + LEAVE_TIME_MAX_AHEAD_MS), { paused: true, leaveTime: new Date(now + LEAVE_TIME_MAX_AHEAD_MS) }],
    ["a few minutes past (clock skew)", at(now - 60_000), { paused: true, leaveTime: new Date(now - 60_000) }],
  ])("accepts %s", (_what, status, expected) => {
    expect(checkStatus(status, now)).toEqual(expected);
  });

  it.each([
    ["seconds = 1e15", create(ConnectorStatusSchema, { leaveTime: { seconds: 10n ** 15n } })],
    ["the largest int64", create(ConnectorStatusSchema, { leaveTime: { seconds: 2n ** 63n - 1n } })],
    ["the smallest int64", create(ConnectorStatusSchema, { leaveTime: { seconds: -(2n ** 63n) } })],
    ["nanos above a second", at(now + 60_000, 1_000_000_000)],
    ["negative nanos", at(now + 60_000, -1)],
    ["more than a year ahead", at(now + LEAVE_TIME_MAX_AHEAD_MS + 2_000)],
    ["long past", at(now - LEAVE_TIME_MAX_BEHIND_MS - 2_000)],
    ["the epoch", create(ConnectorStatusSchema, { leaveTime: { seconds: 0n } })],
  ])("refuses %s, without throwing", (_what, status) => {
    expect(checkStatus(status, now)).toEqual({ invalid: "leave_time is not a time within the next year" });
  });
});
