import type { IncomingMessage, ServerResponse } from "node:http";
import { type CaptureStore, createCaptureStore } from "./capture-store.js";
import { createExchangeFeed, type ExchangeFeed } from "./exchange-feed.js";
import { createLiveTraffic, type LiveTraffic } from "./live-traffic.js";
import { createReplayer, type Replayer } from "./replay.js";
import { createTrafficHistory, type TrafficHistory } from "../observability/traffic-history.js";

/** What one node keeps of its traffic for operators to look at: the live feed, the last 15 minutes, captures, replays. */
export interface NodeTraffic {
  nodeId: string;
  feed: ExchangeFeed;
  live: LiveTraffic;
  history: TrafficHistory;
  captures: CaptureStore;
  replayer: Replayer;
  forgetTenant(tenant: string): void;
  close(): void;
}

/** `gateway`: where replays are sent (called at replay time, so the gateway may be built after this). */
export function createNodeTraffic(nodeId: string, gateway: () => (req: IncomingMessage, res: ServerResponse) => void): NodeTraffic {
  const feed = createExchangeFeed();
  const live = createLiveTraffic(feed);
  const history = createTrafficHistory();
  const captures = createCaptureStore(nodeId);
  return {
    nodeId,
    feed,
    live,
    history,
    captures,
    replayer: createReplayer(gateway, live),
    forgetTenant(tenant) {
      history.forgetTenant(tenant);
      captures.forgetTenant(tenant);
    },
    close: () => captures.close(),
  };
}
