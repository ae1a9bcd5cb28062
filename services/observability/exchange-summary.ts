import { timestampNow } from "@bufbuild/protobuf/wkt";
import type { ExchangeSummary } from "../../gen/ferry/admin/v1/admin_service_pb.js";
import { durationFromMs } from "../../core/duration.js";
import type { AccessOutcome, ExchangeRecord } from "./exchange-record.js";

const ACTOR_PREFIX: Record<Exclude<(AccessOutcome & { granted: true })["method"], "none">, string> = {
  apiKey: "client-key",
  jwt: "jwt",
  mtls: "client-cert",
  basic: "basic",
  login: "login",
  replay: "admin",
};

/** Who a request came from: whom the access policy found the client to be, else its address (the audit actor too). */
export function principalOf(r: ExchangeRecord): string {
  const a = r.access;
  if (!a?.granted || a.method === "none") return `client:${r.clientAddress}`;
  return `${ACTOR_PREFIX[a.method]}:${a.subject}`;
}

/**
 * A finished exchange as the admin API shows it (WatchExchanges, captures, replays). Built as the plain object a
 * protobuf-es message is, every field given: create() would fill in defaults by reflection, once per exchange
 * while anyone watches.
 */
export function summaryOf(r: ExchangeRecord, nodeId: string, captureId = ""): ExchangeSummary {
  return {
    $typeName: "ferry.admin.v1.ExchangeSummary",
    time: timestampNow(),
    nodeId,
    tenant: r.tenant,
    target: r.target,
    method: r.method,
    path: r.path,
    status: r.status,
    code: r.code ?? "",
    duration: durationFromMs(r.durationMs),
    bytesIn: BigInt(r.bytesIn),
    bytesOut: BigInt(r.bytesOut),
    clientAddress: r.clientAddress,
    principal: principalOf(r),
    exchangeId: r.exchangeId,
    requestId: r.requestId,
    captureId,
  };
}
