import { FerryError } from "../../core/errors.js";

/** What the router knows when no tunnel can take a new exchange for a target. */
export interface RoutingState {
  /** A tunnel serving the target is open, but at its exchange limit (never, when no node answered at all). */
  busy?: boolean;
  /** Every tunnel serving the target that could take exchanges is paused by the tenant's admin. */
  paused: boolean;
  /** The tenant has connectors online and none of them serves the target: no such target (404), not offline (503). */
  unknownTarget: boolean;
}

/**
 * The client's error when no tunnel can take an exchange, the same whether the
 * node looked at its own tunnels (TunnelRegistry.pick) or the cluster found no
 * node that would (the ingress, on "no responders").
 */
export function routingRefusal(tenant: string, target: string, state: RoutingState): FerryError {
  if (state.busy) {
    return new FerryError("unavailable", "connector_busy", `every connector of target "${target}" is at its exchange limit`, {
      retryAfterSeconds: 1,
    });
  }
  if (state.paused) {
    return new FerryError("unavailable", "connector_paused", `the connector of target "${target}" is paused by its admin`, {
      retryAfterSeconds: 30,
    });
  }
  if (state.unknownTarget) return new FerryError("not_found", "target_not_found", `tenant "${tenant}" has no target "${target}"`);
  return new FerryError("unavailable", "no_connector", `no connector for target "${target}" is online`, {
    retryAfterSeconds: 5,
  });
}
