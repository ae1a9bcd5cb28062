import type { Frame } from "../../gen/ferry/tunnel/v1/exchange_pb.js";

/** The path from the ingress node to the connector for one exchange. */
export interface ExchangeRoute {
  /** Sends a frame towards the connector. */
  send(frame: Frame): void;
  /** Receive window the connector grants for the request body. */
  requestWindow: number;
  /** Largest Data chunk the path carries. */
  maxFrameSize: number;
  /** Back-pressure of the path: a promise to await before sending more body, or undefined. */
  ready(): Promise<void> | undefined;
}

/**
 * How the ingress node reaches the node holding a connector. In one process
 * the bus is a function call; in a cluster it is NATS. The gateway depends on
 * this interface only.
 */
export interface ExchangeBus {
  /**
   * Routes a new exchange to a connector of `tenant` that serves `target` and
   * sends it `head` (requestHeadFrame), with the open where the path allows,
   * so the caller sends only what follows. Frames coming back go to `deliver`,
   * and may come before the promise settles. Rejects with a FerryError when
   * nobody can take it (no connector, unknown target, all busy).
   */
  open(tenant: string, target: string, head: Frame, deliver: (frame: Frame) => void): Promise<ExchangeRoute>;
}
