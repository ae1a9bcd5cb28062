import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { EchoService } from "../../gen/ferry/testing/v1/echo_service_pb.js";
import { percentile } from "./percentile.js";

const CALL_TIMEOUT_MS = 30_000;

export interface CallResult {
  /** Calls answered in the measured time. */
  calls: number;
  callsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
}

export interface EchoCaller {
  /** One Echo call with `message`; rejects with the call's ConnectError. */
  echo(message: string): Promise<void>;
  /** `callers` loops, each calling Echo again as soon as its answer is in, for `seconds`. */
  load(callers: number, seconds: number, message: string): Promise<CallResult>;
  /** Closes the HTTP/2 connection. */
  close(): void;
}

/**
 * A gRPC client of EchoService at `baseUrl` (a path prefix is kept: Ferry's
 * /relay/{tenant}/{target}) over one cleartext HTTP/2 connection, as a gRPC
 * client multiplexes its calls.
 */
export function createEchoCaller(baseUrl: string): EchoCaller {
  const sessionManager = new Http2SessionManager(baseUrl);
  const client: Client<typeof EchoService> = createClient(EchoService, createGrpcTransport({ baseUrl, sessionManager }));
  const echo = async (message: string) => {
    // A deadline: a call that never comes back fails the run instead of hanging it.
    const res = await client.echo({ message }, { timeoutMs: CALL_TIMEOUT_MS });
    if (res.message !== message) throw new Error(`Echo answered "${res.message}" to "${message}"`);
  };
  return {
    echo,
    async load(callers, seconds, message) {
      const latencies: number[] = [];
      const deadline = performance.now() + seconds * 1000;
      let failure: Error | undefined;
      const loop = async () => {
        while (!failure) {
          const t = performance.now();
          try {
            await echo(message);
          } catch (e) {
            failure ??= e as Error;
            return;
          }
          const now = performance.now();
          if (now > deadline) return;
          latencies.push(now - t);
        }
      };
      await Promise.all(Array.from({ length: callers }, loop));
      if (failure) throw failure;
      latencies.sort((a, b) => a - b);
      return {
        calls: latencies.length,
        callsPerSecond: latencies.length / seconds,
        p50Ms: percentile(latencies, 0.5),
        p99Ms: percentile(latencies, 0.99),
      };
    },
    close: () => sessionManager.abort(),
  };
}
