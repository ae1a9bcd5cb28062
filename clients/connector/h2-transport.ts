import type { Logger } from "../sdk/logger.js";
import type { TargetRequest } from "./target-forwarder.js";

export interface H2Transport {
  /** Sends the request over HTTP/2, or calls `http1` when the target turns out to speak only HTTP/1.1. */
  forward(req: TargetRequest, http1: () => void): void;
  close(): Promise<void>;
}

// Interim: every request goes over HTTP/1.1 until the HTTP/2 transport lands.
export function createH2Transport(_log: Logger): H2Transport {
  return {
    forward: (_req, http1) => http1(),
    close: async () => {},
  };
}
