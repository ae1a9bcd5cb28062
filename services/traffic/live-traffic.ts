import type { ExchangeSummary } from "../../gen/ferry/admin/v1/admin_service_pb.js";
import type { SummarySink } from "../observability/exchange-record.js";
import type { ExchangeFeed } from "./exchange-feed.js";

/**
 * Where summaries of finished exchanges go when anyone wants them: this
 * node's watchers, other nodes' watchers (a cluster publishes them over NATS
 * while some node has watchers), and a replay waiting for its own exchange.
 * `wanted` is false almost always, so the observer builds nothing per request.
 */
export interface LiveTraffic extends SummarySink {
  /** The summary of the exchange with this request id, once it finishes here (a replay's). */
  awaitRequest(requestId: string, signal: AbortSignal): Promise<ExchangeSummary>;
  /** Adds a destination beyond this node's watchers (the cluster's publisher). */
  attach(sink: SummarySink): void;
}

export function createLiveTraffic(feed: ExchangeFeed): LiveTraffic {
  const waiters = new Map<string, (s: ExchangeSummary) => void>();
  const sinks: SummarySink[] = [];
  return {
    get wanted() {
      return feed.watched || waiters.size > 0 || sinks.some((s) => s.wanted);
    },
    publish(summary) {
      feed.publish(summary);
      for (const sink of sinks) if (sink.wanted) sink.publish(summary);
      waiters.get(summary.requestId)?.(summary);
    },
    awaitRequest(requestId, signal) {
      return new Promise((resolve, reject) => {
        const abort = () => {
          waiters.delete(requestId);
          reject(signal.reason);
        };
        if (signal.aborted) return abort();
        signal.addEventListener("abort", abort, { once: true });
        waiters.set(requestId, (s) => {
          signal.removeEventListener("abort", abort);
          waiters.delete(requestId);
          resolve(s);
        });
      });
    },
    attach(sink) {
      sinks.push(sink);
    },
  };
}
