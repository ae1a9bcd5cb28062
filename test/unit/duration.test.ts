import { create } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { durationFromMs, formatDuration, msFromDuration, parseDuration } from "../../core/duration.js";
import { FerryError } from "../../core/errors.js";

describe("parseDuration", () => {
  it.each([
    ["500ms", 500],
    ["30s", 30_000],
    ["5m", 300_000],
    ["2h", 7_200_000],
    ["1d", 86_400_000],
    ["1h30m", 5_400_000],
    ["1m30s500ms", 90_500],
    ["2", 2000],
    ["0", 0],
    ["1.5", 1500],
    ["1.5s", 1500],
    ["0.25m", 15_000],
    ["  30s ", 30_000],
  ])("parses %j as %d ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(["abc", "10x", "", "   ", "s", "-1s", "1s2", "1 s", "1.s", ".5s", "1e3", "ms10", "10MS", "1h 30m"])("rejects %j", (text) => {
    let error: unknown;
    try {
      parseDuration(text);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(FerryError);
    expect(error).toMatchObject({ kind: "invalid_argument", code: "invalid_duration" });
    expect((error as Error).message).toBe(`"${text}" is not a duration (examples: 500ms, 30s, 5m, 2h)`);
  });
});

describe("formatDuration", () => {
  it.each([
    [0, "0ms"],
    [250, "250ms"],
    [999, "999ms"],
    [1000, "1s"],
    [1500, "1.5s"],
    [30_000, "30s"],
    [60_000, "1m"],
    [90_000, "1.5m"],
    [3_600_000, "1h"],
    [5_400_000, "1.5h"],
    [86_400_000, "24h"],
  ])("formats %d ms as %j", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it("round-trips through parseDuration for whole units", () => {
    for (const ms of [0, 7, 999, 1000, 45_000, 120_000, 7_200_000]) expect(parseDuration(formatDuration(ms))).toBe(ms);
  });
});

describe("durationFromMs / msFromDuration", () => {
  it("splits milliseconds into seconds and nanos", () => {
    const d = durationFromMs(1500);
    expect(d.seconds).toBe(1n);
    expect(d.nanos).toBe(500_000_000);
    expect(durationFromMs(0)).toMatchObject({ seconds: 0n, nanos: 0 });
    expect(durationFromMs(30_000)).toMatchObject({ seconds: 30n, nanos: 0 });
  });

  it.each([0, 1, 250, 999, 1000, 1001, 30_000, 86_400_000, 123_456_789])("round-trips %d ms", (ms) => {
    expect(msFromDuration(durationFromMs(ms))).toBe(ms);
  });

  it("reads durations built elsewhere and returns undefined for none", () => {
    expect(msFromDuration(create(DurationSchema, { seconds: 2n, nanos: 1_500_000 }))).toBe(2002);
    expect(msFromDuration(undefined)).toBeUndefined();
  });
});
