import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Keepalive } from "../../core/exchange/keepalive.js";

// Fake timers: the keepalive's clock is driven by the test, so nothing waits for real time.
describe("Keepalive", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  function start(intervalMs = 1000) {
    const pings: bigint[] = [];
    const dead: number[] = [];
    const k = new Keepalive({ intervalMs, sendPing: (n) => pings.push(n), onDead: (ms) => dead.push(ms) });
    return { k, pings, dead };
  }

  it("pings once per interval while the peer talks", () => {
    const { k, pings, dead } = start();
    for (let i = 0; i < 20; i++) {
      vi.advanceTimersByTime(250);
      k.seen();
    }
    expect(pings).toEqual([1n, 2n, 3n, 4n, 5n]);
    expect(dead).toEqual([]);
    k.stop();
  });

  it("declares the peer dead after 1.5x the interval of silence, and within 1.75x", () => {
    const { k, dead } = start();
    vi.advanceTimersByTime(1500);
    expect(dead).toEqual([]);
    vi.advanceTimersByTime(250);
    expect(dead).toHaveLength(1);
    expect(dead[0]).toBeGreaterThan(1500);
    expect(dead[0]).toBeLessThanOrEqual(1750);
    vi.advanceTimersByTime(10_000);
    expect(dead).toHaveLength(1); // once
    k.stop();
  });

  it("answers at most two pings per interval", () => {
    const { k } = start();
    const answers = Array.from({ length: 1000 }, () => k.shouldAnswer()).filter(Boolean).length;
    expect(answers).toBe(1);
    vi.advanceTimersByTime(500);
    expect(k.shouldAnswer()).toBe(true);
    expect(k.shouldAnswer()).toBe(false);
    k.stop();
  });

  it("measures the round trip of the latest ping only", () => {
    const { k, pings } = start();
    vi.advanceTimersByTime(250); // the first check sends the first ping
    expect(pings).toEqual([1n]);
    vi.advanceTimersByTime(30);
    k.answered(pings.at(-1)!);
    expect(k.lastRttMs).toBe(30);
    k.answered(999n);
    expect(k.lastRttMs).toBe(30);
    k.stop();
  });
});
