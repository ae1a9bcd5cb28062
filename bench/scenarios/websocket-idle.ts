import type { WebSocket } from "ws";
import { settledRss } from "../lib/proc.js";
import { closeSockets, echoLoad, echoOnce, openSockets } from "../lib/ws-load.js";
import type { Scenario } from "../lib/types.js";

const HELLO = Buffer.alloc(64, "i");

/**
 * What an open, idle WebSocket costs the relay and the connector: a fresh
 * ferry-1 setup, a warm-up, then N WebSockets opened and each proven end to
 * end with one echo; RSS growth once it settles, per WebSocket. Each
 * WebSocket is an exchange on a tunnel, plus the connector's own connection
 * to the target.
 */
export const websocketIdle: Scenario = {
  id: "websocket-idle",
  title: "Idle WebSockets",
  only: ["ferry-1"],
  method: (o) =>
    `a fresh relay and connector; after 10 WebSockets opened, echoed and closed as a warm-up, ${count(o.quick)} WebSockets opened (100 at a time), each echoing one ${HELLO.length} B message, then left idle; RSS growth once settled, per WebSocket, for the relay and the connector`,
  seconds: (o) => (o.quick ? 6 : 12),
  headline: [
    { key: "relayKB", unit: "KB/WebSocket relay", higherIsBetter: false, ratios: false },
    { key: "connectorKB", unit: "KB/WebSocket connector", higherIsBetter: false, ratios: false },
  ],
  async run(setup, o) {
    if (!setup) throw new Error("needs a setup");
    const pid = (role: string) => {
      const w = setup.watched.find((x) => x.role === role);
      if (!w) throw new Error(`the ${setup.name} setup has no ${role} process`);
      return w.pid;
    };
    const relay = pid("relay");
    const connector = pid("connector");
    const url = `${setup.base.replace(/^http/, "ws")}/ws`;
    const n = count(o.quick);
    // Warm-up: code paths, the connector's pool and the first buffers are not what one WebSocket costs.
    const warm = await openSockets(url, 10);
    try {
      await echoLoad(warm, HELLO, 1, 0.2);
    } finally {
      closeSockets(warm);
    }
    const base = { relay: await settledRss(relay), connector: await settledRss(connector) };
    let sockets: WebSocket[] = [];
    try {
      sockets = await openSockets(url, n);
      await echoOnce(sockets, HELLO);
      const open = { relay: await settledRss(relay), connector: await settledRss(connector) };
      return {
        n,
        relayBaseMB: mb(base.relay),
        connectorBaseMB: mb(base.connector),
        relayKB: kb(open.relay - base.relay, n),
        connectorKB: kb(open.connector - base.connector, n),
      };
    } finally {
      closeSockets(sockets);
    }
  },
};

function count(quick: boolean): number {
  return quick ? 200 : 1000;
}

function kb(bytes: number, n: number): number {
  return Math.round(bytes / n / 100) / 10;
}

function mb(bytes: number): number {
  return Math.round(bytes / 1e5) / 10;
}
