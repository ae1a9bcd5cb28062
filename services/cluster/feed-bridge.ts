import { create, toBinary } from "@bufbuild/protobuf";
import type { NatsConnection, Subscription } from "nats";
import { ExchangeSummarySchema } from "../../gen/ferry/admin/v1/admin_service_pb.js";
import { FeedInterestSchema } from "../../gen/ferry/cluster/v1/cluster_pb.js";
import type { ExchangeFeed } from "../traffic/exchange-feed.js";
import type { LiveTraffic } from "../traffic/live-traffic.js";
import { readExchangeSummary, readFeedInterest } from "./cluster-messages.js";
import { type ClusterFault, guarded } from "./nats-callback.js";
import { FEED_ALL, FEED_INTEREST_SUBJECT, feedSubject } from "./subjects.js";

const INTEREST_EVERY_MS = 5_000;
/** Interest heard this long ago still counts: two announcements may be lost or late. */
const INTEREST_TTL_MS = 12_000;

export interface FeedBridge {
  close(): void;
}

/**
 * Live traffic across the cluster (FeedInterest in cluster.proto): a node
 * with watchers says so every few seconds and listens to every node's
 * summaries; the others publish theirs only while they have heard it. Core
 * NATS, at most once: a watcher may miss an exchange when NATS is cut off,
 * as it may when it reads too slowly.
 */
export function bridgeFeed(deps: { nc: NatsConnection; nodeId: string; feed: ExchangeFeed; live: LiveTraffic; fault: ClusterFault }): FeedBridge {
  const { nc, nodeId, feed } = deps;
  let interestUntil = 0;
  const interest = nc.subscribe(FEED_INTEREST_SUBJECT, {
    callback: guarded(deps.fault, "feed interest callback threw", (msg) => {
      const from = readFeedInterest(msg.data);
      if (!from.ok) return deps.fault(from.reason);
      if (from.value !== nodeId) interestUntil = Date.now() + INTEREST_TTL_MS;
    }),
  });
  deps.live.attach({
    get wanted() {
      return interestUntil > Date.now();
    },
    publish(summary) {
      // Only this node's own exchanges: the ones from elsewhere came from NATS.
      if (summary.nodeId === nodeId) nc.publish(feedSubject(summary.tenant), toBinary(ExchangeSummarySchema, summary));
    },
  });

  let exchanges: Subscription | undefined;
  let announcer: NodeJS.Timeout | undefined;
  const announce = () => nc.publish(FEED_INTEREST_SUBJECT, toBinary(FeedInterestSchema, create(FeedInterestSchema, { nodeId })));
  feed.onWatchers((count) => {
    if (count > 0 && !exchanges) {
      // Listening before announcing: the first summaries the others send are not lost.
      exchanges = nc.subscribe(FEED_ALL, {
        callback: guarded(deps.fault, "feed callback threw", (msg) => {
          const summary = readExchangeSummary(msg.subject, msg.data);
          if (!summary.ok) return deps.fault(summary.reason);
          if (summary.value.nodeId !== nodeId) feed.publish(summary.value);
        }),
      });
      announce();
      announcer = setInterval(announce, INTEREST_EVERY_MS);
      announcer.unref();
    } else if (count === 0 && exchanges) {
      exchanges.unsubscribe();
      exchanges = undefined;
      clearInterval(announcer);
    }
  });

  return {
    close() {
      clearInterval(announcer);
      exchanges?.unsubscribe();
      interest.unsubscribe();
    },
  };
}
