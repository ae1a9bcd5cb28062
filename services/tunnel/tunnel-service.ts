import { Code, ConnectError, createContextKey, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  type ConnectRequest,
  type ConnectResponse,
  type Hello,
  TunnelService,
} from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";
import { durationFromMs } from "../../clients/sdk/duration.js";
import { shortId } from "../../clients/sdk/ids.js";
import type { Logger } from "../../clients/sdk/logger.js";
import { isDnsLabel } from "../../clients/sdk/names.js";
import {
  DEFAULT_WINDOW,
  MAX_FRAME_SIZE,
  MAX_WINDOW,
  MIN_PROTOCOL_VERSION,
  MIN_WINDOW,
  PROTOCOL_VERSION,
} from "../../clients/sdk/protocol.js";
import { FERRY_VERSION } from "../../clients/sdk/version.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { Catalog } from "../state/catalog.js";
import { RelayTunnel } from "./relay-tunnel.js";
import type { TunnelRegistry } from "./tunnel-registry.js";

/** Per-request facts the HTTP layer hands to the handler. */
export interface PeerInfo {
  remoteAddress: string;
  /** Tears the HTTP/2 stream down when the peer is dead and a graceful end would hang. */
  kill(): void;
}
export const peerKey = createContextKey<PeerInfo>({ remoteAddress: "", kill: () => {} });

export interface TunnelServiceDeps {
  catalog: Catalog;
  registry: TunnelRegistry;
  audit: AuditLog;
  log: Logger;
  nodeId: string;
  keepaliveMs: number;
  /** True once the relay drains: new tunnels are refused so connectors pick another node. */
  isDraining(): boolean;
}

const HELLO_TIMEOUT_MS = 10_000;
const MAX_TARGETS = 1000;
const MAX_CAPACITY = 10_000;
const DEFAULT_CAPACITY = 256;

type Control = ConnectResponse["message"];

/** The TunnelService: authenticates a connector, says Welcome, then pipes exchanges. */
export function createTunnelService(deps: TunnelServiceDeps): ServiceImpl<typeof TunnelService> {
  return {
    async *connect(requests: AsyncIterable<ConnectRequest>, ctx: HandlerContext) {
      const peer = ctx.values.get(peerKey);
      if (deps.isDraining()) throw new ConnectError("relay is draining; connect to another node", Code.Unavailable);
      const secret = bearer(ctx);
      const key = authenticate(deps, secret, peer.remoteAddress);
      const incoming = requests[Symbol.asyncIterator]();
      const hello = await readHello(incoming);
      // The key (or its tenant) may have gone while we waited for Hello; revocation only sees registered tunnels.
      authenticate(deps, secret, peer.remoteAddress);
      const tunnel = new RelayTunnel(
        {
          id: shortId(),
          tenant: key.tenant,
          keyId: key.keyId,
          connectorId: hello.connectorId,
          connectorVersion: hello.connectorVersion,
          hostname: hello.hostname,
          tunnelIndex: hello.tunnelIndex,
          remoteAddress: peer.remoteAddress,
          connectTime: new Date(),
          targets: new Set(hello.targets.map((t) => t.name)),
          capacity: hello.maxConcurrentExchanges || DEFAULT_CAPACITY,
          requestWindow: hello.requestWindow || DEFAULT_WINDOW,
        },
        {
          log: deps.log,
          keepaliveMs: deps.keepaliveMs,
          onClose: (t, reason) => {
            deps.registry.remove(t);
            deps.audit.record({
              action: "connector.disconnect",
              actor: `connector:${t.info.keyId}`,
              tenant: t.info.tenant,
              details: { tunnel: t.info.id, connectorId: t.info.connectorId, reason },
            });
            if (reason === "keepalive timeout") peer.kill();
          },
        },
      );
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
        action: "connector.connect",
        actor: `connector:${key.keyId}`,
        tenant: key.tenant,
        details: {
          tunnel: tunnel.info.id,
          connectorId: hello.connectorId,
          version: hello.connectorVersion,
          hostname: hello.hostname,
          remoteAddress: peer.remoteAddress,
          targets: [...tunnel.info.targets],
        },
      });

      // Always read: exchanges' buffers are bounded by their windows, and a
      // stalled reader would stall every exchange on the tunnel.
      void (async () => {
        try {
          for (;;) {
            const next = await incoming.next();
            if (next.done) break;
            tunnel.handle(next.value);
          }
          tunnel.close("connector closed the tunnel", { graceful: true });
        } catch (err) {
          tunnel.close(`stream failed: ${ConnectError.from(err).rawMessage}`);
        }
      })();

      try {
        for await (const item of tunnel.outbox) {
          const message: Control =
            item.kind === "frames" ? { case: "frames", value: { $typeName: "ferry.tunnel.v1.FrameBatch", frames: item.frames } } : item.message;
          yield { $typeName: "ferry.tunnel.v1.ConnectResponse", message };
        }
      } finally {
        tunnel.close(ctx.signal.aborted ? "stream aborted" : "tunnel ended");
      }
      // Tell the connector why, when it is something it must act on (a revoked key).
      if (tunnel.closeStatus === "unauthenticated") throw new ConnectError(tunnel.closeReason, Code.Unauthenticated);
    },
  };
}

function bearer(ctx: HandlerContext): string {
  const header = ctx.requestHeader.get("authorization") ?? "";
  return header.toLowerCase().startsWith("bearer ") ? header.slice(7).trim() : "";
}

function authenticate(deps: TunnelServiceDeps, secret: string, remoteAddress: string) {
  const check = deps.catalog.checkConnectorKey(secret);
  if (!check.ok) {
    deps.audit.record({
      action: "connector.refused",
      actor: "anonymous",
      details: { reason: secret === "" ? "missing" : check.reason, remoteAddress },
    });
    const message =
      secret === ""
        ? "connector key missing: send authorization: Bearer <key>"
        : check.reason === "revoked"
          ? "connector key was revoked"
          : "connector key is not valid";
    throw new ConnectError(message, Code.Unauthenticated);
  }
  return check.key;
}

async function readHello(incoming: AsyncIterator<ConnectRequest>): Promise<Hello> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new ConnectError(`no Hello within ${HELLO_TIMEOUT_MS / 1000}s`, Code.DeadlineExceeded)),
      HELLO_TIMEOUT_MS,
    );
  });
  try {
    const first = await Promise.race([incoming.next(), timeout]);
    if (first.done || first.value.message.case !== "hello") {
      throw new ConnectError("the first tunnel message must be Hello", Code.InvalidArgument);
    }
    return validateHello(first.value.message.value);
  } finally {
    clearTimeout(timer);
  }
}

function validateHello(hello: Hello): Hello {
  const v = hello.protocolVersion;
  if (v < MIN_PROTOCOL_VERSION || v > PROTOCOL_VERSION) {
    const upgrade = v < MIN_PROTOCOL_VERSION ? "upgrade the connector" : "upgrade the relay";
    throw new ConnectError(
      `connector speaks tunnel protocol v${v}; this relay (ferry ${FERRY_VERSION}) speaks v${MIN_PROTOCOL_VERSION} to v${PROTOCOL_VERSION}: ${upgrade}`,
      Code.FailedPrecondition,
    );
  }
  if (hello.targets.length === 0) throw new ConnectError("Hello lists no targets", Code.InvalidArgument);
  if (hello.targets.length > MAX_TARGETS) {
    throw new ConnectError(`Hello lists ${hello.targets.length} targets; at most ${MAX_TARGETS}`, Code.InvalidArgument);
  }
  for (const t of hello.targets) {
    if (!isDnsLabel(t.name)) throw new ConnectError(`target name "${t.name}" is not a DNS label`, Code.InvalidArgument);
  }
  if (hello.maxConcurrentExchanges > MAX_CAPACITY) {
    throw new ConnectError(`max_concurrent_exchanges is above ${MAX_CAPACITY}`, Code.InvalidArgument);
  }
  if (hello.requestWindow !== 0 && (hello.requestWindow < MIN_WINDOW || hello.requestWindow > MAX_WINDOW)) {
    throw new ConnectError(`request_window must be between ${MIN_WINDOW} and ${MAX_WINDOW}`, Code.InvalidArgument);
  }
  if (hello.connectorId.length > 128 || hello.hostname.length > 255 || hello.connectorVersion.length > 64) {
    throw new ConnectError("Hello has an over-long connector id, host name or version", Code.InvalidArgument);
  }
  return hello;
}
