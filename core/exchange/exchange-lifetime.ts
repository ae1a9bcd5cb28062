import type { Frame } from "../../gen/ferry/tunnel/v1/exchange_pb.js";

/**
 * Tells from the frames passing through when an exchange is over: a Reset in
 * either direction, or both the request and the response ended. Whoever
 * forwards frames without running the exchange (the tunnel, the cluster bus)
 * uses it to know its load and what to fail when a path dies.
 */
export class ExchangeLifetime {
  private requestDone = false;
  private responseDone = false;

  /** A frame towards the connector; true once the exchange is over. */
  request(frame: Frame): boolean {
    const k = frame.kind;
    if (k.case === "reset") return true;
    if (k.case === "end" || (k.case === "requestHead" && k.value.endStream)) this.requestDone = true;
    return this.requestDone && this.responseDone;
  }

  /** A frame towards the client; true once the exchange is over. */
  response(frame: Frame): boolean {
    const k = frame.kind;
    if (k.case === "reset") return true;
    if (k.case === "end" || (k.case === "responseHead" && k.value.endStream)) this.responseDone = true;
    return this.requestDone && this.responseDone;
  }
}
