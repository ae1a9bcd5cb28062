import { create, toBinary } from "@bufbuild/protobuf";
import type { NatsConnection, Subscription } from "nats";
import { DisconnectResponseSchema } from "../../gen/ferry/cluster/v1/cluster_pb.js";
import type { Logger } from "../../core/logger.js";
import { readDisconnectRequest } from "./cluster-messages.js";
import { type ClusterFault, guarded } from "./nats-callback.js";
import { controlSubject } from "./subjects.js";

export interface DisconnectRequestsDeps {
  nc: NatsConnection;
  nodeId: string;
  /** Closes a connector's tunnels on this node; resolves to how many. */
  disconnectHere(tenant: string, connectorId: string, reason: string): Promise<number>;
  fault: ClusterFault;
  log: Logger;
}

/** Answers disconnect requests for tunnels this node holds (the admin API may be called on any node). */
export function serveDisconnectRequests(deps: DisconnectRequestsDeps): Subscription {
  return deps.nc.subscribe(controlSubject(deps.nodeId), {
    callback: guarded(deps.fault, "control callback threw", (msg) => {
      const req = readDisconnectRequest(msg.data);
      if (!req.ok) return deps.fault(req.reason);
      const { tenant, connectorId, reason } = req.value;
      deps
        .disconnectHere(tenant, connectorId, reason)
        .then((tunnels) => msg.respond(toBinary(DisconnectResponseSchema, create(DisconnectResponseSchema, { tunnels }))))
        .catch((e: unknown) => deps.log.warn({ err: String(e), tenant }, "could not answer a disconnect request from the cluster"));
    }),
  });
}
