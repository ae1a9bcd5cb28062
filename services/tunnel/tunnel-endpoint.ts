import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { ConnectRequest, ConnectResponse, Hello } from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";
import { durationFromMs } from "../../clients/sdk/duration.js";
import { FerryError } from "../../clients/sdk/errors.js";
import { shortId } from "../../clients/sdk/ids.js";
import type { Logger } from "../../clients/sdk/logger.js";
import { isDnsLabel } from "../../clients/sdk/names.js";
import {
  DEFAULT_WINDOW,
  MAX_FRAME_SIZE,
  MAX_MESSAGE_BYTES,
  MAX_WINDOW,
  MIN_PROTOCOL_VERSION,
  MIN_WINDOW,
  PROTOCOL_VERSION,
} from "../../clients/sdk/protocol.js";
import { CodecError, decodeConnectRequest, encodeTunnelMessage, TUNNEL_PATH } from "../../clients/sdk/tunnel-codec.js";
import { FERRY_VERSION } from "../../clients/sdk/version.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { RefusalLimiter } from "../audit/refusal-limiter.js";
import { type NodeRequest, type NodeResponse, sendError } from "../gateway/http-error.js";
import type { Catalog } from "../state/catalog.js";
import type { PeerFaults } from "../observability/peer-faults.js";
import type { Limits } from "../relay/limits.js";
import { type ConnectorCert, connectorCert } from "./connector-cert.js";
import { GrpcCall, GrpcError, GrpcStatus } from "./grpc-call.js";
import { RelayTunnel, type TunnelCloseStatus } from "./relay-tunnel.js";
import type { TunnelRegistry } from "./tunnel-registry.js";

export interface TunnelEndpointDeps {
  catalog: Catalog;
  registry: TunnelRegistry;
  audit: AuditLog;
  log: Logger;
  nodeId: string;
  keepaliveMs: number;
  /** True once the relay drains: new tunnels are refused so connectors pick another node. */
  isDraining(): boolean;
  /** Bounds audit events about refused keys (anyone can present a bad one). */
  refusals: RefusalLimiter;
  /** Client certificates verified against --connector-ca authenticate connectors (mTLS). */
  acceptCertificates?: boolean;
  limits: Limits;
  faults: PeerFaults;
}

const HELLO_TIMEOUT_MS = 10_000;
const MAX_TARGETS = 1000;
const MAX_CAPACITY = 10_000;
const DEFAULT_CAPACITY = 256;

/**
 * TunnelService/Connect (proto/ferry/tunnel/v1/tunnel_service.proto) served
 * straight on the HTTP/2 stream: authenticate the connector, read Hello, answer
 * Welcome, then pipe exchanges until either side ends the stream.
 */
export function createTunnelEndpoint(deps: TunnelEndpointDeps): (req: NodeRequest, res: NodeResponse) => void {
  return (req, res) => {
    if (!("stream" in req)) {
      // A proxy on the way that speaks only HTTP/1.1 ends up here; say so instead of a bare 404.
      sendError(res, new FerryError("failed_precondition", "http2_required", "the tunnel needs HTTP/2 end to end (gRPC); this request came over HTTP/1.1"));
      return;
    }
    if (req.url !== TUNNEL_PATH) {
      sendError(res, new FerryError("not_found", "not_found", `no such tunnel method: ${req.url}`));
      return;
    }
    const type = String(req.headers["content-type"] ?? "");
    if (req.method !== "POST" || !type.startsWith("application/grpc")) {
      sendError(res, new FerryError("invalid_argument", "not_grpc", "the tunnel endpoint takes gRPC (POST, content-type application/grpc)"));
      return;
    }
    const call = new GrpcCall(req, res as Http2ServerResponse, MAX_MESSAGE_BYTES);
    serve(deps, call, req).catch((err: unknown) => {
      if (err instanceof GrpcError) return call.finish(err.status, err.message);
      deps.log.error({ err }, "tunnel failed");
      call.finish(GrpcStatus.INTERNAL, "internal error");
    });
  };
}

async function serve(deps: TunnelEndpointDeps, call: GrpcCall, req: Http2ServerRequest): Promise<void> {
  if (deps.isDraining()) throw new GrpcError(GrpcStatus.UNAVAILABLE, "relay is draining; connect to another node");
  const secret = bearer(call.header("authorization"));
  const cert: ConnectorCert = deps.acceptCertificates ? connectorCert(req) : { kind: "none" };
  const key = authenticate(deps, secret, cert, call.remoteAddress);
  const hello = await readHello(call);
  // The key (or its tenant) may have gone while we waited for Hello; revocation only sees registered tunnels.
  authenticate(deps, secret, cert, call.remoteAddress);
  if (key.connectorId !== undefined && hello.connectorId !== key.connectorId) {
    refuse(deps, key.actor, key.tenant, { reason: "connector id differs from the certificate's", connectorId: hello.connectorId, remoteAddress: call.remoteAddress });
    throw new GrpcError(
      GrpcStatus.PERMISSION_DENIED,
      `the client certificate is for connector "${key.connectorId}" but Hello says "${hello.connectorId}": start the connector with --id ${key.connectorId}`,
    );
  }

  const tunnel = new RelayTunnel(
    {
      id: shortId(),
      nodeId: deps.nodeId,
      tenant: key.tenant,
      keyId: key.keyId,
      connectorId: hello.connectorId,
      connectorVersion: hello.connectorVersion,
      hostname: hello.hostname,
      tunnelIndex: hello.tunnelIndex,
      remoteAddress: call.remoteAddress,
      connectTime: new Date(),
      targets: new Set(hello.targets.map((t) => t.name)),
      capacity: hello.maxConcurrentExchanges || DEFAULT_CAPACITY,
      requestWindow: hello.requestWindow || DEFAULT_WINDOW,
      ...(key.certificateExpires ? { certificateExpires: key.certificateExpires } : {}),
    },
    {
      log: deps.log,
      keepaliveMs: deps.keepaliveMs,
      onClose: (t, reason) => {
        if (hello.probe) return;
        deps.registry.remove(t);
        deps.audit.record({
          action: "connector.disconnect",
          actor: key.actor,
          tenant: t.info.tenant,
          details: { tunnel: t.info.id, connectorId: t.info.connectorId, reason },
        });
        if (reason === "keepalive timeout") call.kill();
      },
      onDraining: () => deps.registry.changed(),
      onStatus: () => deps.registry.changed(),
    },
  );
  tunnel.applyStatus(hello.status);
  tunnel.outbox.pushControl({
    case: "welcome",
    value: {
      $typeName: "ferry.tunnel.v1.Welcome",
      protocolVersion: PROTOCOL_VERSION,
      tunnelId: tunnel.info.id,
      nodeId: deps.nodeId,
      tenant: key.tenant,
      keepaliveInterval: durationFromMs(deps.keepaliveMs),
      maxFrameSize: MAX_FRAME_SIZE,
      relayVersion: FERRY_VERSION,
    },
  });
  // A probe (ferry doctor) is authenticated and answers pings, but it is never a place to send exchanges.
  if (!hello.probe) deps.registry.add(tunnel);
  deps.audit.record({
    action: hello.probe ? "connector.probe" : "connector.connect",
    actor: key.actor,
    tenant: key.tenant,
    details: {
      tunnel: tunnel.info.id,
      auth: key.auth,
      ...(key.certificate ? { certificate: key.certificate } : {}),
      connectorId: hello.connectorId,
      version: hello.connectorVersion,
      hostname: hello.hostname,
      remoteAddress: call.remoteAddress,
      targets: [...tunnel.info.targets],
      ...(tunnel.paused ? { paused: true } : {}),
      ...(tunnel.leaveTime ? { leaveTime: tunnel.leaveTime.toISOString() } : {}),
    },
  });

  // Always read: exchanges' buffers are bounded by their windows, and a
  // stalled reader would stall every exchange on the tunnel.
  call.onMessage((bytes) => {
    let message: ConnectRequest;
    try {
      message = decodeConnectRequest(bytes);
    } catch (e) {
      tunnel.close(`malformed message: ${(e as CodecError).message}`);
      return;
    }
    tunnel.handle(message);
  });
  call.onClose(() => tunnel.close("stream aborted"));
  req.once("end", () => tunnel.close("connector closed the tunnel", { graceful: true }));

  for await (const item of tunnel.outbox) {
    const message: ConnectResponse["message"] =
      item.kind === "frames" ? { case: "frames", value: { $typeName: "ferry.tunnel.v1.FrameBatch", frames: item.frames } } : item.message;
    if (!call.send(encodeTunnelMessage({ $typeName: "ferry.tunnel.v1.ConnectResponse", message }, true))) await call.drained();
  }
  tunnel.close("tunnel ended");
  // Tell the connector why, when it is something it must act on (a revoked key, a disabled tenant).
  const status = tunnel.closeStatus ? CLOSE_STATUS[tunnel.closeStatus] : GrpcStatus.OK;
  call.finish(status, status === GrpcStatus.OK ? "" : tunnel.closeReason);
}

const CLOSE_STATUS: Record<TunnelCloseStatus, number> = {
  unauthenticated: GrpcStatus.UNAUTHENTICATED,
  permission_denied: GrpcStatus.PERMISSION_DENIED,
  unavailable: GrpcStatus.UNAVAILABLE,
};

function bearer(header: string | undefined): string {
  const h = header ?? "";
  return h.toLowerCase().startsWith("bearer ") ? h.slice(7).trim() : "";
}

/** Who a tunnel belongs to once authenticated. */
interface Principal {
  tenant: string;
  /** The connector key's id; empty for a tunnel authenticated by certificate alone. */
  keyId: string;
  /** The audit actor: connector:KEYID, or connector-cert:NAME without a key. */
  actor: string;
  auth: "key" | "certificate" | "certificate+key";
  /** The certificate's name (SAN or CN) when one authenticated the tunnel. */
  certificate?: string;
  /** The connector id the certificate names; Hello must carry the same. */
  connectorId?: string;
  /** When the certificate stops being valid: the tunnel closes then (see the relay's expiry sweep). */
  certificateExpires?: Date;
}

/**
 * A connector key, a client certificate (mTLS), or both. A certificate that
 * does not verify counts as absent, so a key still gets in; with no key it is
 * refused. Both together must name the same tenant.
 */
function authenticate(deps: TunnelEndpointDeps, secret: string, cert: ConnectorCert, remoteAddress: string): Principal {
  if (cert.kind === "untrusted" && secret === "") {
    const suppressed = deps.refusals.admit();
    if (suppressed !== undefined) {
      deps.audit.record({
        action: "connector.refused",
        actor: "anonymous",
        details: { reason: "untrusted certificate", certificate: cert.subject, error: cert.reason, remoteAddress, ...(suppressed ? { suppressedBefore: suppressed } : {}) },
      });
    }
    throw new GrpcError(GrpcStatus.UNAUTHENTICATED, `client certificate not accepted (${cert.reason}) and no connector key sent`);
  }
  if (cert.kind !== "valid") {
    const key = authenticateKey(deps, secret, remoteAddress);
    return { tenant: key.tenant, keyId: key.keyId, actor: `connector:${key.keyId}`, auth: "key" };
  }
  const actor = `connector-cert:${cert.name}`;
  const details = { certificate: cert.name, serial: cert.serial, remoteAddress };
  const key = secret === "" ? undefined : authenticateKey(deps, secret, remoteAddress);
  if (key && key.tenant !== cert.tenant) {
    refuse(deps, `connector:${key.keyId}`, key.tenant, { reason: "certificate and key name different tenants", ...details });
    throw new GrpcError(GrpcStatus.UNAUTHENTICATED, `the client certificate names tenant "${cert.tenant}" but the connector key is another tenant's`);
  }
  const tenant = deps.catalog.getTenant(cert.tenant);
  if (!tenant) {
    refuse(deps, actor, cert.tenant, { reason: "unknown tenant", ...details });
    throw new GrpcError(GrpcStatus.UNAUTHENTICATED, `the client certificate names tenant "${cert.tenant}", which does not exist`);
  }
  if (tenant.disabled) {
    refuse(deps, actor, cert.tenant, { reason: "tenant disabled", ...details });
    throw new GrpcError(GrpcStatus.PERMISSION_DENIED, `tenant "${cert.tenant}" is disabled`);
  }
  return {
    tenant: cert.tenant,
    keyId: key?.keyId ?? "",
    actor: key ? `connector:${key.keyId}` : actor,
    auth: key ? "certificate+key" : "certificate",
    certificate: cert.name,
    certificateExpires: cert.notAfter,
    ...(cert.connectorId !== undefined ? { connectorId: cert.connectorId } : {}),
  };
}

/** Refusals of a verified certificate: its holder is known, so they are recorded without the limiter. */
function refuse(deps: TunnelEndpointDeps, actor: string, tenant: string, details: Record<string, unknown>): void {
  deps.audit.record({ action: "connector.refused", actor, tenant, details });
}

function authenticateKey(deps: TunnelEndpointDeps, secret: string, remoteAddress: string) {
  const check = deps.catalog.checkConnectorKey(secret);
  if (!check.ok) {
    const suppressed = deps.refusals.admit();
    if (suppressed !== undefined) {
      deps.audit.record({
        action: "connector.refused",
        actor: "anonymous",
        details: { reason: secret === "" ? "missing" : check.reason, remoteAddress, ...(suppressed ? { suppressedBefore: suppressed } : {}) },
      });
    }
  } else if (deps.catalog.getTenant(check.key.tenant)?.disabled) {
    deps.audit.record({
      action: "connector.refused",
      actor: `connector:${check.key.keyId}`,
      tenant: check.key.tenant,
      details: { reason: "tenant disabled", remoteAddress },
    });
    throw new GrpcError(GrpcStatus.PERMISSION_DENIED, `tenant "${check.key.tenant}" is disabled`);
  }
  if (!check.ok) {
    const message =
      secret === ""
        ? "connector key missing: send authorization: Bearer <key>"
        : check.reason === "revoked"
          ? "connector key was revoked"
          : check.reason === "expired"
            ? "connector key has expired (it was rotated)"
            : "connector key is not valid";
    throw new GrpcError(GrpcStatus.UNAUTHENTICATED, message);
  }
  return check.key;
}

/** The first message, which must be a valid Hello, within HELLO_TIMEOUT_MS. */
function readHello(call: GrpcCall): Promise<Hello> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new GrpcError(GrpcStatus.DEADLINE_EXCEEDED, `no Hello within ${HELLO_TIMEOUT_MS / 1000}s`)),
      HELLO_TIMEOUT_MS,
    );
    call.onClose(() => {
      clearTimeout(timer);
      reject(new GrpcError(GrpcStatus.UNAVAILABLE, "the connector went away before Hello"));
    });
    call.onMessage((bytes) => {
      clearTimeout(timer);
      call.onMessage(undefined); // what follows waits for the tunnel to take over
      try {
        const first = decodeConnectRequest(bytes);
        if (first.message.case !== "hello") throw new GrpcError(GrpcStatus.INVALID_ARGUMENT, "the first tunnel message must be Hello");
        resolve(validateHello(first.message.value));
      } catch (e) {
        reject(e instanceof CodecError ? new GrpcError(GrpcStatus.INVALID_ARGUMENT, `malformed Hello: ${e.message}`) : e);
      }
    });
  });
}

function validateHello(hello: Hello): Hello {
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
  if (hello.targets.length > MAX_TARGETS) throw invalid(`Hello lists ${hello.targets.length} targets; at most ${MAX_TARGETS}`);
  for (const t of hello.targets) {
    if (!isDnsLabel(t.name)) throw invalid(`target name "${t.name}" is not a DNS label`);
  }
  if (hello.maxConcurrentExchanges > MAX_CAPACITY) throw invalid(`max_concurrent_exchanges is above ${MAX_CAPACITY}`);
  if (hello.requestWindow !== 0 && (hello.requestWindow < MIN_WINDOW || hello.requestWindow > MAX_WINDOW)) {
    throw invalid(`request_window must be between ${MIN_WINDOW} and ${MAX_WINDOW}`);
  }
  if (hello.connectorId.length > 128 || hello.hostname.length > 255 || hello.connectorVersion.length > 64) {
    throw invalid("Hello has an over-long connector id, host name or version");
  }
  return hello;
}
