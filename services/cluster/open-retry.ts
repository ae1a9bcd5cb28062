import { FerryError } from "../../core/errors.js";
import { routingRefusal } from "../tunnel/routing-refusal.js";

/** What presence says of a target across the cluster. */
export interface TargetPresence {
  /** Some node holds a tunnel of the tenant serving the target. */
  serving: boolean;
  /** The tenant has a tunnel on some node. */
  tenantOnline: boolean;
  /** Every tunnel of the target that could take exchanges is paused (none is on its way elsewhere). */
  paused?: boolean;
}

/** How one ask of OpenExchange on a route subject went wrong. */
export type OpenFailure =
  /**
   * No node subscribes the route, so none has an open tunnel for it. `servesHere`: a tunnel of this node serves the
   * target; `canWait`: the request may still wait for a connector on its way to another node.
   */
  | { case: "no_responders"; tenant: string; target: string; presence: TargetPresence; servesHere: boolean; canWait: boolean }
  /** No node answered in time. */
  | { case: "timeout" }
  /** NATS could not carry the ask. */
  | { case: "nats_error"; err: unknown }
  /** A node answered with something this node cannot use. */
  | { case: "bad_answer" }
  /** The node NATS chose refused the exchange. */
  | { case: "refused"; refusal: FerryError };

/** Ask again (after `waitMs`), or fail the client's request with `error`. */
export type OpenStep = { retry: true; waitMs: number } | { retry: false; error: FerryError };

/** Refusals another node of the queue group may not give: it may have room, or a live tunnel where one only had a draining one. */
const RETRY_ELSEWHERE = new Set(["connector_busy", "no_connector", "draining"]);
const MAX_ASKS_REFUSED = 3;
const MAX_ASKS_TIMED_OUT = 2;
/** How often a request waiting for a moving connector asks again. */
const MOVE_POLL_MS = 100;

const fail = (error: FerryError): OpenStep => ({ retry: false, error });

/** What the ingress does after ask number `attempt` (from 1) of an OpenExchange failed. */
export function afterFailedOpen(failure: OpenFailure, attempt: number): OpenStep {
  switch (failure.case) {
    case "no_responders": {
      const { presence, tenant, target } = failure;
      // A connector on its way from a draining node to another: worth a short wait, not a 503.
      if (!presence.paused && presence.serving && failure.canWait) return { retry: true, waitMs: MOVE_POLL_MS };
      return fail(
        routingRefusal(tenant, target, {
          paused: presence.paused === true,
          unknownTarget: !presence.serving && presence.tenantOnline && !failure.servesHere,
        }),
      );
    }
    case "timeout":
      // Safe to ask again: nothing reaches the connector before the ingress has the answer.
      if (attempt < MAX_ASKS_TIMED_OUT) return { retry: true, waitMs: 0 };
      return fail(new FerryError("unavailable", "cluster_timeout", "no relay node answered in time for this target", { retryAfterSeconds: 1 }));
    case "nats_error":
      return fail(
        new FerryError("unavailable", "cluster_unavailable", `the cluster cannot route requests right now: ${String(failure.err)}`, {
          retryAfterSeconds: 1,
          cause: failure.err,
        }),
      );
    case "bad_answer":
      return fail(new FerryError("unavailable", "cluster_unavailable", "a relay node sent an answer this node cannot use", { retryAfterSeconds: 1 }));
    case "refused":
      if (RETRY_ELSEWHERE.has(failure.refusal.code) && attempt < MAX_ASKS_REFUSED) return { retry: true, waitMs: 0 };
      return fail(failure.refusal);
  }
}
