import { MAX_FRAME_SIZE } from "../../core/exchange/protocol.js";
import type { TunnelRegistry } from "../tunnel/tunnel-registry.js";
import type { ExchangeBus } from "./exchange-bus.js";

/** The single-node bus: the ingress and the tunnel are in the same process. */
export function createLocalBus(registry: TunnelRegistry): ExchangeBus {
  return {
    async open(tenant, target, head, deliver) {
      const tunnel = registry.pick(tenant, target);
      const send = tunnel.attach(head.exchangeId, deliver);
      send(head);
      return {
        send,
        requestWindow: tunnel.info.requestWindow,
        maxFrameSize: MAX_FRAME_SIZE,
        ready: () => tunnel.outbox.ready(),
      };
    },
  };
}
