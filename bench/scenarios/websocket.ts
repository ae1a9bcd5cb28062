import { closeSockets, type EchoResult, echoLoad, openSockets } from "../lib/ws-load.js";
import type { RunOptions, Scenario } from "../lib/types.js";
import { median } from "../lib/percentile.js";

const CONNECTIONS = 50;
const SMALL = Buffer.alloc(64, "m");
/** Bulk: a few sockets with a window of large messages, like a file going over a WebSocket. */
const LARGE = Buffer.alloc(64 * 1024, "M");
const LARGE_SOCKETS = 4;
const LARGE_IN_FLIGHT = 4;

/**
 * WebSocket echo through each setup: the message rate and round trip of many
 * small request/response messages, then the throughput of large binary ones.
 * The load runs in the bench process with `ws`, the echo server is the
 * target's /ws.
 */
export const websocket: Scenario = {
  id: "websocket",
  title: "WebSocket echo",
  skip: { "ferry-3": "see ferry-2: the same cross-node path, one client" },
  method: (o) =>
    `${CONNECTIONS} WebSockets each sending a ${SMALL.length} B binary message and waiting for its echo, ${runsOf(o, smallSeconds(o))} after a ${o.quick ? 1 : 2} s warm-up (msgs/s = echoes received; round trip from send to echo); then ${LARGE_SOCKETS} WebSockets each keeping ${LARGE_IN_FLIGHT} messages of ${LARGE.length / 1024} KiB in flight, ${runsOf(o, largeSeconds(o))} (MB/s = payload echoed back, 1 MB = 10^6 bytes); the target is a \`ws\` echo server, no compression`,
  seconds: (o) => (o.quick ? 8 : 40),
  headline: [
    { key: "msgsPerSecond", unit: "msgs/s", higherIsBetter: true },
    { key: "p50Ms", unit: "ms p50", higherIsBetter: false },
    { key: "p99Ms", unit: "ms p99", higherIsBetter: false },
    { key: "mbPerSecond", unit: "MB/s 64 KiB", higherIsBetter: true },
  ],
  async run(setup, o) {
    if (!setup) throw new Error("needs a setup");
    const url = `${setup.base.replace(/^http/, "ws")}/ws`;
    const small = await openSockets(url, CONNECTIONS);
    const smallRuns: EchoResult[] = [];
    try {
      await echoLoad(small, SMALL, 1, o.quick ? 1 : 2);
      for (let i = 0; i < runs(o); i++) smallRuns.push(await echoLoad(small, SMALL, 1, smallSeconds(o)));
    } finally {
      closeSockets(small);
    }
    const large = await openSockets(url, LARGE_SOCKETS);
    const largeRuns: EchoResult[] = [];
    try {
      await echoLoad(large, LARGE, LARGE_IN_FLIGHT, 1);
      for (let i = 0; i < runs(o); i++) largeRuns.push(await echoLoad(large, LARGE, LARGE_IN_FLIGHT, largeSeconds(o)));
    } finally {
      closeSockets(large);
    }
    // The median run's latencies come with its rate, so they stay consistent.
    const m = byRate(smallRuns);
    return {
      msgsPerSecond: Math.round(m.messagesPerSecond),
      p50Ms: m.p50Ms,
      p99Ms: m.p99Ms,
      mbPerSecond: Math.round(median(largeRuns.map((r) => r.mbPerSecond))),
      // No `requests`: CPU was counted over small and 64 KiB messages alike, so a CPU per message would mean nothing.
    };
  },
};

function byRate(runs: EchoResult[]): EchoResult {
  return [...runs].sort((a, b) => a.messagesPerSecond - b.messagesPerSecond)[Math.floor(runs.length / 2)]!;
}

const runs = (o: RunOptions) => (o.quick ? 1 : 3);
const runsOf = (o: RunOptions, seconds: number) => (o.quick ? `1 run of ${seconds} s` : `median of 3 runs of ${seconds} s`);
const smallSeconds = (o: RunOptions) => (o.quick ? 3 : 7);
const largeSeconds = (o: RunOptions) => (o.quick ? 2 : 4);
