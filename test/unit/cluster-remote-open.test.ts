import { describe, expect, it } from "vitest";
import { FerryError } from "../../core/errors.js";
import { afterFailedOpen, type OpenFailure, type TargetPresence } from "../../services/cluster/open-retry.js";

// What the ingress node does after one ask of OpenExchange on ferry.route.acme.app went wrong: ask again (another
// node of the queue group may take it), or answer the client with which error.

const refused = (code: string, kind: FerryError["kind"] = "unavailable") => new FerryError(kind, code, `refused: ${code}`, { retryAfterSeconds: 1 });
const noResponders = (presence: TargetPresence, more: { servesHere?: boolean; canWait?: boolean } = {}): OpenFailure => ({
  case: "no_responders",
  tenant: "acme",
  target: "app",
  presence,
  servesHere: more.servesHere ?? false,
  canWait: more.canWait ?? true,
});

/** The step, with the error as the client sees it. */
const step = (failure: OpenFailure, attempt: number) => {
  const s = afterFailedOpen(failure, attempt);
  if (s.retry) return { retry: s.waitMs };
  return { kind: s.error.kind, code: s.error.code, retryAfterSeconds: s.error.extra.retryAfterSeconds };
};

describe("the ingress after a failed OpenExchange", () => {
  it.each<[string, OpenFailure, number, object]>([
    // A node's refusal that another node may not give: ask again, up to three asks in all.
    ["connector_busy", { case: "refused", refusal: refused("connector_busy") }, 1, { retry: 0 }],
    ["connector_busy on the second ask", { case: "refused", refusal: refused("connector_busy") }, 2, { retry: 0 }],
    ["connector_busy on the third ask", { case: "refused", refusal: refused("connector_busy") }, 3, { kind: "unavailable", code: "connector_busy", retryAfterSeconds: 1 }],
    ["no_connector (a node whose only tunnel just went)", { case: "refused", refusal: refused("no_connector") }, 1, { retry: 0 }],
    ["draining (a node shutting down)", { case: "refused", refusal: refused("draining") }, 2, { retry: 0 }],
    ["draining on the third ask", { case: "refused", refusal: refused("draining") }, 3, { kind: "unavailable", code: "draining", retryAfterSeconds: 1 }],
    // Refusals every node would give: passed on at once.
    ["connector_paused", { case: "refused", refusal: refused("connector_paused") }, 1, { kind: "unavailable", code: "connector_paused", retryAfterSeconds: 1 }],
    ["target_not_found", { case: "refused", refusal: refused("target_not_found", "not_found") }, 1, { kind: "not_found", code: "target_not_found", retryAfterSeconds: 1 }],
    ["exchange_in_use", { case: "refused", refusal: refused("exchange_in_use", "already_exists") }, 1, { kind: "already_exists", code: "exchange_in_use", retryAfterSeconds: 1 }],
    ["bad_open_exchange", { case: "refused", refusal: refused("bad_open_exchange", "invalid_argument") }, 1, { kind: "invalid_argument", code: "bad_open_exchange", retryAfterSeconds: 1 }],
    ["internal", { case: "refused", refusal: refused("internal", "internal") }, 1, { kind: "internal", code: "internal", retryAfterSeconds: 1 }],
    // NATS lost the ask or its answer: asked once more, at once (nothing reached the connector yet).
    ["a timeout", { case: "timeout" }, 1, { retry: 0 }],
    ["a second timeout", { case: "timeout" }, 2, { kind: "unavailable", code: "cluster_timeout", retryAfterSeconds: 1 }],
    ["a timeout after asks that were refused", { case: "timeout" }, 3, { kind: "unavailable", code: "cluster_timeout", retryAfterSeconds: 1 }],
    ["another NATS error", { case: "nats_error", err: new Error("connection closed") }, 1, { kind: "unavailable", code: "cluster_unavailable", retryAfterSeconds: 1 }],
    ["an answer this node cannot use", { case: "bad_answer" }, 1, { kind: "unavailable", code: "cluster_unavailable", retryAfterSeconds: 1 }],
    // No node subscribes the route: presence says why.
    ["no responders while a connector of the target is on its way to another node", noResponders({ serving: true, tenantOnline: true }), 1, { retry: 100 }],
    ["no responders, still moving, many asks later", noResponders({ serving: true, tenantOnline: true }), 25, { retry: 100 }],
    ["no responders once the wait for a moving connector is over", noResponders({ serving: true, tenantOnline: true }, { canWait: false }), 30, { kind: "unavailable", code: "no_connector", retryAfterSeconds: 5 }],
    ["no responders and the target's connectors paused (no wait)", noResponders({ serving: true, tenantOnline: true, paused: true }), 1, { kind: "unavailable", code: "connector_paused", retryAfterSeconds: 30 }],
    ["no responders and the tenant online without the target", noResponders({ serving: false, tenantOnline: true }), 1, { kind: "not_found", code: "target_not_found", retryAfterSeconds: undefined }],
    ["no responders, the tenant online, and a tunnel here serving it (busy here)", noResponders({ serving: false, tenantOnline: true }, { servesHere: true }), 1, { kind: "unavailable", code: "no_connector", retryAfterSeconds: 5 }],
    ["no responders and the tenant offline everywhere", noResponders({ serving: false, tenantOnline: false }), 1, { kind: "unavailable", code: "no_connector", retryAfterSeconds: 5 }],
  ])("after %s (ask %i)", (_, failure, attempt, expected) => {
    expect(step(failure, attempt)).toEqual(expected);
  });

  it("passes a node's refusal on as it came, and keeps the NATS error as the cause for the log", () => {
    const refusal = refused("connector_paused");
    const passed = afterFailedOpen({ case: "refused", refusal }, 1);
    expect(!passed.retry && passed.error).toBe(refusal);
    const err = new Error("connection closed");
    const failed = afterFailedOpen({ case: "nats_error", err }, 1);
    expect(!failed.retry && [failed.error.extra.cause, failed.error.message]).toEqual([err, "the cluster cannot route requests right now: Error: connection closed"]);
  });
});
