import type { Hello } from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";
import { isDnsLabel } from "../../core/names.js";
import { MAX_WINDOW, MIN_PROTOCOL_VERSION, MIN_WINDOW, PROTOCOL_VERSION } from "../../core/exchange/protocol.js";
import { FERRY_VERSION } from "../../core/version.js";
import { GrpcStatus } from "../http/grpc-status.js";
import type { Limits } from "../limits/limits.js";
import { checkStatus, type ValidStatus } from "./connector-status.js";
import { GrpcError } from "./grpc-call.js";
import { LimitRefusal } from "./tunnel-admission.js";

/** Exchanges one tunnel may carry at once; a Hello asking for more is refused. */
const MAX_CAPACITY = 10_000;

/**
 * Everything in a Hello is the connector's word: checked here, before any
 * tunnel object or timer exists for it, so a bad one leaves nothing behind.
 */
export function validateHello(hello: Hello, limits: Limits): { hello: Hello; status: ValidStatus } {
  const v = hello.protocolVersion;
  if (v < MIN_PROTOCOL_VERSION || v > PROTOCOL_VERSION) {
    const upgrade = v < MIN_PROTOCOL_VERSION ? "upgrade the connector" : "upgrade the relay";
    throw new GrpcError(
      GrpcStatus.FAILED_PRECONDITION,
      `connector speaks tunnel protocol v${v}; this relay (ferry ${FERRY_VERSION}) speaks v${MIN_PROTOCOL_VERSION} to v${PROTOCOL_VERSION}: ${upgrade}`,
    );
  }
  const invalid = (message: string) => new GrpcError(GrpcStatus.INVALID_ARGUMENT, message);
  if (hello.targets.length === 0 && !hello.probe) throw invalid("Hello lists no targets");
  if (hello.targets.length > 0 && hello.probe) throw invalid("a probe Hello lists no targets");
  if (hello.targets.length > limits.maxTargetsPerTunnel) {
    throw new LimitRefusal(
      "maxTargetsPerTunnel",
      "too many targets",
      `Hello lists ${hello.targets.length} targets; this relay takes at most ${limits.maxTargetsPerTunnel} per tunnel`,
    );
  }
  for (const t of hello.targets) {
    if (!isDnsLabel(t.name)) throw invalid(`target name "${t.name.slice(0, 64)}" is not a DNS label`);
  }
  if (hello.maxConcurrentExchanges > MAX_CAPACITY) throw invalid(`max_concurrent_exchanges is above ${MAX_CAPACITY}`);
  if (hello.requestWindow !== 0 && (hello.requestWindow < MIN_WINDOW || hello.requestWindow > MAX_WINDOW)) {
    throw invalid(`request_window must be between ${MIN_WINDOW} and ${MAX_WINDOW}`);
  }
  if (hello.connectorId.length > 128 || hello.hostname.length > 255 || hello.connectorVersion.length > 64) {
    throw invalid("Hello has an over-long connector id, host name or version");
  }
  const status = checkStatus(hello.status);
  if ("invalid" in status) throw invalid(`Hello status: ${status.invalid}`);
  return { hello, status };
}
