import type { Msg } from "nats";

/** Counts one thing another node (or anyone on NATS) sent that could not be used; `reason` is fixed, never peer input. */
export type ClusterFault = (reason: string, details?: Record<string, unknown>) => void;

/**
 * A NATS callback that cannot throw: nats.js treats an exception in a
 * subscription callback as fatal to the connection, so one bad message
 * would drop every cross-node exchange of this node.
 */
export const guarded =
  (fault: ClusterFault, reason: string, fn: (msg: Msg) => void) =>
  (err: Error | null, msg: Msg): void => {
    if (err) return;
    try {
      fn(msg);
    } catch (e) {
      fault(reason, { err: String(e), subject: msg.subject });
    }
  };
