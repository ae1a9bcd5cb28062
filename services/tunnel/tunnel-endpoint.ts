import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { BlockList } from "node:net";
import { clientAddressOf } from "../auth/client-address.js";
import type { ConnectRequest, Hello } from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";
import { durationFromMs } from "../../core/duration.js";
import { FerryError } from "../../core/errors.js";
import { shortId } from "../../core/exchange/ids.js";
import type { Logger } from "../../core/logger.js";
import {
  DEFAULT_WINDOW,
  MAX_FRAME_SIZE,
  MAX_MESSAGE_BYTES,
  PROTOCOL_VERSION,
} from "../../core/exchange/protocol.js";
import { CodecError, decodeConnectRequest, encodeFramesGathered, encodeTunnelMessage, TUNNEL_PATH } from "../../core/exchange/tunnel-codec.js";
import { FERRY_VERSION } from "../../core/version.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { RefusalLimiter } from "../audit/refusal-limiter.js";
import { bearer } from "../auth/bearer.js";
import { createSourceBackoff, type SourceBackoff } from "../auth/source-backoff.js";
import { type NodeRequest, type NodeResponse, sendError } from "../http/http-error.js";
import type { Catalog } from "../state/catalog.js";
import type { PeerFaults } from "../limits/peer-faults.js";
import type { Limits } from "../limits/limits.js";
import { type ConnectorCert, connectorCert } from "./connector-cert.js";
import { authenticate, type Principal, refuse, refuseAnonymous } from "./connector-auth.js";
import type { ValidStatus } from "./connector-status.js";
import { validateHello } from "./hello-check.js";
import { GrpcStatus } from "../http/grpc-status.js";
import { GrpcCall, GrpcError } from "./grpc-call.js";
import { RelayTunnel, type TunnelCloseStatus } from "./relay-tunnel.js";
import { createTunnelAdmission, LimitRefusal, type TunnelAdmission } from "./tunnel-admission.js";
import type { TunnelRegistry } from "./tunnel-registry.js";
import { widenTunnelSession } from "./tunnel-windows.js";

export interface TunnelEndpointDeps {
  catalog: Catalog;
  registry: TunnelRegistry;
  audit: AuditLog;
  log: Logger;
  nodeId: string;
  keepaliveMs: number;
  /** True once the relay drains: new tunnels are refused so connectors pick another node. */
  isDraining(): boolean;
  /** Bounds audit events about refusals, per source address (anyone can present a bad key). */
  refusals: RefusalLimiter;
  /**
   * Back-off on failed connector credentials per source address (one per
   * node, apart from the admin API's). Without it the endpoint keeps its own.
   */
  backoff?: SourceBackoff;
  /** Client certificates verified against --connector-ca authenticate connectors (mTLS). */
  acceptCertificates?: boolean;
  limits: Limits;
  faults: PeerFaults;
  /** --trust-proxy addresses: their X-Forwarded-For names the connector (back-off, audit). */
  trustedProxies?: BlockList;
}

const HELLO_TIMEOUT_MS = 10_000;
const DEFAULT_CAPACITY = 256;
/** A probe (ferry doctor) needs seconds; past this it is closed, so a probe cannot become a hidden long-lived tunnel. */
export const PROBE_MAX_MS = 60_000;
/** Targets named in a connect audit event (and its log line); the rest are only counted. */
const AUDIT_TARGETS = 16;

/** The endpoint's dependencies with the per-node pieces it makes itself when not given. */
interface Endpoint extends TunnelEndpointDeps {
  backoff: SourceBackoff;
  admission: TunnelAdmission;
}

/**
 * TunnelService/Connect (proto/ferry/tunnel/v1/tunnel_service.proto) served
 * straight on the HTTP/2 stream: authenticate the connector, read Hello, answer
 * Welcome, then pipe exchanges until either side ends the stream.
 */
export function createTunnelEndpoint(options: TunnelEndpointDeps): (req: NodeRequest, res: NodeResponse) => void {
  const deps: Endpoint = {
    ...options,
    backoff: options.backoff ?? createSourceBackoff(options.limits),
    admission: createTunnelAdmission(options.limits),
  };
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

async function serve(deps: Endpoint, call: GrpcCall, req: Http2ServerRequest): Promise<void> {
  const admitted = await admit(deps, call, req);
  const tunnel = openTunnel(deps, call, admitted);
  await carry(call, req, tunnel, deps.faults);
}

/** A tunnel let in: whom it belongs to, what it said, and where it came from. */
interface Admitted {
  key: Principal;
  hello: Hello;
  helloStatus: ValidStatus;
  source: string;
}

/** Authenticates the connector, reads its Hello and checks the tunnel limits; each refusal is counted and audited. */
async function admit(deps: Endpoint, call: GrpcCall, req: Http2ServerRequest): Promise<Admitted> {
  if (deps.isDraining()) throw new GrpcError(GrpcStatus.UNAVAILABLE, "relay is draining; connect to another node");
  // Behind a --trust-proxy (an HTTP/2 load balancer), the connector it forwards for.
  const source = clientAddressOf(call.remoteAddress, call.header("x-forwarded-for"), deps.trustedProxies).clientAddress;
  const wait = deps.backoff.waitMs(source);
  if (wait > 0) {
    // Refused before the credential is even looked at: a flood of guesses costs no hashing and little audit.
    deps.faults.limited("authFailuresBeforeBackoff");
    refuseAnonymous(deps, source, { reason: "too many failed attempts" });
    throw new GrpcError(GrpcStatus.RESOURCE_EXHAUSTED, `too many failed attempts from this address: retry in ${Math.ceil(wait / 1000)}s`);
  }
  const secret = bearer(call.header("authorization"));
  const cert: ConnectorCert = deps.acceptCertificates ? connectorCert(req) : { kind: "none" };
  let key = authenticate(deps, secret, cert, source);
  deps.backoff.succeeded(source);
  // Before Hello: a key in a reconnect loop must not even hold streams waiting for one.
  withinLimit(deps, key, source, () => deps.admission.takeOpen(key.principal));
  const { hello, status: helloStatus } = await readHello(call, deps).catch((err: unknown) => {
    throw limitRefused(deps, err, key, source);
  });
  // The key, its tenant or the certificate may have gone while we waited for Hello; revocation only sees registered tunnels.
  key = authenticate(deps, secret, cert, source);
  if (key.connectorId !== undefined && hello.connectorId !== key.connectorId) {
    refuse(deps, key.actor, key.tenant, source, { reason: "connector id differs from the certificate's", connectorId: hello.connectorId });
    throw new GrpcError(
      GrpcStatus.PERMISSION_DENIED,
      `the client certificate is for connector "${key.connectorId}" but Hello says "${hello.connectorId}": start the connector with --id ${key.connectorId}`,
    );
  }
  // From here to registry.add nothing waits: no other tunnel can pass the same room check meanwhile.
  withinLimit(deps, key, source, () => deps.admission.checkRoom(deps.registry.held(key.tenant), key.principal, key.tenant));
  // Authenticated, Hello valid, within its limits: only now may the session carry a tunnel's windows.
  if (req.stream.session) widenTunnelSession(req.stream.session);
  return { key, hello, helloStatus, source };
}

/** Registers the tunnel and welcomes it; nothing here waits, so no other tunnel passes the room check meanwhile. */
function openTunnel(deps: Endpoint, call: GrpcCall, { key, hello, helloStatus, source }: Admitted): RelayTunnel {
  const targets = hello.targets.map((t) => t.name);
  let probeTimer: NodeJS.Timeout | undefined;
  const tunnel = new RelayTunnel(
    {
      id: shortId(),
      nodeId: deps.nodeId,
      tenant: key.tenant,
      keyId: key.keyId,
      principal: key.principal,
      connectorId: hello.connectorId,
      connectorVersion: hello.connectorVersion,
      hostname: hello.hostname,
      tunnelIndex: hello.tunnelIndex,
      remoteAddress: source,
      connectTime: new Date(),
      targets: new Set(targets),
      capacity: hello.maxConcurrentExchanges || DEFAULT_CAPACITY,
      requestWindow: hello.requestWindow || DEFAULT_WINDOW,
      ...(key.certificateExpires ? { certificateExpires: key.certificateExpires } : {}),
      ...(key.serial ? { certificateSerial: key.serial } : {}),
      ...(hello.probe ? { probe: true } : {}),
    },
    {
      log: deps.log,
      faults: deps.faults,
      keepaliveMs: deps.keepaliveMs,
      onClose: (t, reason) => {
        clearTimeout(probeTimer);
        deps.registry.remove(t);
        deps.audit.record({
          action: "connector.disconnect",
          actor: key.actor,
          tenant: t.info.tenant,
          details: { tunnel: t.info.id, connectorId: t.info.connectorId, reason, ...(hello.probe ? { probe: true } : {}) },
        });
        if (reason === "keepalive timeout") call.kill();
      },
      onDraining: () => deps.registry.changed(),
      onStatus: () => deps.registry.changed(),
    },
  );
  // A probe is registered (revocation, tenant deletion and DisconnectConnector end it) but never routed to.
  if (hello.probe) probeTimer = setTimeout(() => tunnel.close("probe time is up", { graceful: true }), PROBE_MAX_MS).unref();
  // Nothing below should throw; if something does, the tunnel must not outlive this call (a zombie holding a
  // registry entry and a keepalive timer).
  try {
    tunnel.applyStatus(helloStatus);
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
    deps.registry.add(tunnel);
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
        remoteAddress: source,
        // A Hello may name hundreds of targets: the record (and its log line) names the first few and counts them all.
        targets: targets.slice(0, AUDIT_TARGETS),
        ...(targets.length > AUDIT_TARGETS ? { targetCount: targets.length } : {}),
        ...(tunnel.paused ? { paused: true } : {}),
        ...(tunnel.leaveTime ? { leaveTime: tunnel.leaveTime.toISOString() } : {}),
      },
    });
  } catch (err) {
    tunnel.close("internal error");
    throw err;
  }
  return tunnel;
}

/** Pipes the tunnel's messages both ways until either side ends the stream, then tells the connector why. */
async function carry(call: GrpcCall, req: Http2ServerRequest, tunnel: RelayTunnel, faults: PeerFaults): Promise<void> {
  // Always read: exchanges' buffers are bounded by their windows, and a
  // stalled reader would stall every exchange on the tunnel.
  call.onMessage((bytes) => {
    let message: ConnectRequest;
    try {
      message = decodeConnectRequest(bytes);
    } catch (e) {
      faults.fault("connector", "malformed_message", { tunnel: tunnel.info.id });
      tunnel.close(`malformed message: ${(e as CodecError).message}`);
      return;
    }
    try {
      tunnel.handle(message);
    } catch (err) {
      // Nothing in handle() should throw (frames are contained one by one); if it does, this tunnel ends, not the process.
      faults.fault("connector", "message_handler_threw", { tunnel: tunnel.info.id, err: String(err) });
      tunnel.close("the relay could not handle a message on this tunnel");
    }
  });
  call.onClose(() => tunnel.close("stream aborted"));
  req.once("end", () => tunnel.close("connector closed the tunnel", { graceful: true }));

  for await (const item of tunnel.outbox) {
    // Frames in pieces: body chunks go to the socket as they came, uncopied.
    const framed = item.kind === "frames" ? encodeFramesGathered(item.frames) : encodeTunnelMessage({ $typeName: "ferry.tunnel.v1.ConnectResponse", message: item.message }, true);
    if (!call.send(framed)) await call.drained();
  }
  tunnel.close("tunnel ended");
  // Tell the connector why, when it is something it must act on (a revoked key, a disabled tenant).
  const status = tunnel.closeStatus ? CLOSE_STATUS[tunnel.closeStatus] : GrpcStatus.OK;
  call.finish(status, status === GrpcStatus.OK ? "" : tunnel.closeReason);
}

/** Runs a limit check; a refusal by it is counted and audited on its way out. */
function withinLimit(deps: Endpoint, key: Principal, source: string, check: () => void): void {
  try {
    check();
  } catch (err) {
    throw limitRefused(deps, err, key, source);
  }
}

/**
 * Counts and audits a refusal by a tunnel limit (the audit bounded per source:
 * a reconnect loop hits it again and again), and hands back the error.
 */
function limitRefused(deps: Endpoint, err: unknown, key: Principal, source: string): unknown {
  if (!(err instanceof LimitRefusal)) return err;
  deps.faults.limited(err.limit);
  refuse(deps, key.actor, key.tenant, source, { reason: err.reason, limit: err.limit });
  return err;
}

const CLOSE_STATUS: Record<TunnelCloseStatus, number> = {
  unauthenticated: GrpcStatus.UNAUTHENTICATED,
  permission_denied: GrpcStatus.PERMISSION_DENIED,
  unavailable: GrpcStatus.UNAVAILABLE,
};

/** The first message, which must be a valid Hello, within HELLO_TIMEOUT_MS; with its status checked. */
function readHello(call: GrpcCall, deps: Endpoint): Promise<{ hello: Hello; status: ValidStatus }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      deps.faults.fault("connector", "hello_timeout");
      reject(new GrpcError(GrpcStatus.DEADLINE_EXCEEDED, `no Hello within ${HELLO_TIMEOUT_MS / 1000}s`));
    }, HELLO_TIMEOUT_MS);
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
        resolve(validateHello(first.message.value, deps.limits));
      } catch (e) {
        const err = e instanceof CodecError ? new GrpcError(GrpcStatus.INVALID_ARGUMENT, `malformed Hello: ${e.message}`) : e;
        if (err instanceof GrpcError && err.status === GrpcStatus.INVALID_ARGUMENT) deps.faults.fault("connector", "invalid_hello", { why: err.message });
        reject(err);
      }
    });
  });
}
