import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { type AdminService, type Capture, TokenSchema, TrafficBucketSchema } from "../../gen/ferry/admin/v1/admin_service_pb.js";
import { durationFromMs, msFromDuration } from "../../core/duration.js";
import { FerryError } from "../../core/errors.js";
import { checkDnsLabel } from "../../core/names.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { Catalog } from "../state/catalog.js";
import { type CaptureStore, MAX_BODY_BYTES, MAX_CAPTURE_MS } from "../traffic/capture-store.js";
import { checkStatusFilter, type ExchangeFeed } from "../traffic/exchange-feed.js";
import { type Replayer, SAFE_METHODS } from "../traffic/replay.js";
import type { TrafficHistory } from "../observability/traffic-history.js";
import { type AdminPrincipal, boundTenant, principalKey } from "./admin-auth.js";

type TrafficRpcs = Pick<
  ServiceImpl<typeof AdminService>,
  "watchExchanges" | "getTrafficHistory" | "startCapture" | "stopCapture" | "listCaptures" | "getCapture" | "replayExchange" | "getCaller"
>;

export interface TrafficRpcDeps {
  catalog: Catalog;
  audit: AuditLog;
  nodeId: string;
  feed: ExchangeFeed;
  history: TrafficHistory;
  captures: CaptureStore;
  replayer: Replayer;
}

const DEFAULT_CAPTURE_MS = 10 * 60_000;
const DEFAULT_BODY_BYTES = 4096;

/**
 * The console's live view: the stream of finished exchanges, the recent
 * history, captures and replays. A tenant token sees and captures only its own
 * tenant (streams carry no request message the interceptor could check, so
 * these calls check the tenant themselves); replays are for admin tokens only.
 */
export function trafficRpcs(deps: TrafficRpcDeps, actor: (ctx: HandlerContext) => string): TrafficRpcs {
  const { catalog, audit, captures } = deps;
  const principal = (ctx: HandlerContext): AdminPrincipal => ctx.values.get(principalKey)!;
  /** The tenant a call is about: a tenant token's own (naming another is refused), else the one named, if any. */
  const scopeOf = (ctx: HandlerContext, named: string): string | undefined => {
    const only = boundTenant(principal(ctx));
    if (only !== undefined && named !== "" && named !== only) {
      throw new FerryError("permission_denied", "other_tenant", `a token for tenant "${only}" reaches only that tenant`);
    }
    const tenant = only ?? (named || undefined);
    if (tenant !== undefined) catalog.requireTenant(checkDnsLabel("tenant", tenant));
    return tenant;
  };
  /** A capture the caller may see: another tenant's is as good as missing to a tenant token. */
  const visible = (ctx: HandlerContext, capture: Capture): Capture => {
    const only = boundTenant(principal(ctx));
    if (only !== undefined && capture.tenant !== only) {
      throw new FerryError("not_found", "capture_not_found", `there is no capture "${capture.captureId}" (it may have expired)`);
    }
    return capture;
  };

  return {
    async *watchExchanges(req, ctx) {
      const tenant = scopeOf(ctx, req.tenant);
      if (req.target !== "") checkDnsLabel("target", req.target);
      checkStatusFilter(req.status);
      for await (const item of deps.feed.watch({ tenant: tenant ?? "", target: req.target, status: req.status }, ctx.signal)) {
        yield { exchanges: item.exchanges, dropped: BigInt(item.dropped) };
      }
    },

    async getTrafficHistory(req, ctx) {
      const tenant = scopeOf(ctx, req.tenant);
      return {
        buckets: deps.history.buckets(tenant).map((b) =>
          create(TrafficBucketSchema, {
            startTime: timestampFromMs(b.startMs),
            requests: BigInt(b.requests),
            errors: BigInt(b.errors),
            latencyP95: b.latencyP95Ms === undefined ? undefined : durationFromMs(b.latencyP95Ms),
          }),
        ),
        bucketWidth: durationFromMs(deps.history.bucketMs),
        nodeId: deps.nodeId,
      };
    },

    async startCapture(req, ctx) {
      const tenant = catalog.requireTenant(checkDnsLabel("tenant", req.tenant)).name;
      const target = checkDnsLabel("target", req.target);
      // Unset or zero: the default, as the proto says.
      const durationMs = msFromDuration(req.duration) || DEFAULT_CAPTURE_MS;
      if (durationMs < 0) throw new FerryError("invalid_argument", "invalid_duration", "duration must be positive");
      if (durationMs > MAX_CAPTURE_MS) throw new FerryError("invalid_argument", "invalid_duration", "a capture records for at most 1 hour");
      if (req.bodyBytes > MAX_BODY_BYTES) throw new FerryError("invalid_argument", "invalid_body_bytes", `body_bytes must be at most ${MAX_BODY_BYTES}`);
      const capture = captures.start({ tenant, target, durationMs, bodyBytes: req.bodyBytes || DEFAULT_BODY_BYTES, actor: actor(ctx) });
      audit.record({
        action: "capture.start",
        actor: actor(ctx),
        tenant,
        details: { captureId: capture.captureId, target, durationMs, bodyBytes: capture.bodyBytes, nodeId: deps.nodeId },
      });
      return { capture };
    },

    async stopCapture(req, ctx) {
      visible(ctx, captures.get(req.captureId).capture);
      const capture = captures.stop(req.captureId);
      audit.record({ action: "capture.stop", actor: actor(ctx), tenant: capture.tenant, details: { captureId: capture.captureId, exchanges: capture.exchanges } });
      return { capture };
    },

    async listCaptures(req, ctx) {
      return { captures: captures.list(scopeOf(ctx, req.tenant)) };
    },

    async getCapture(req, ctx) {
      const { capture, exchanges } = captures.get(req.captureId);
      visible(ctx, capture);
      return { capture, exchanges };
    },

    async replayExchange(req, ctx) {
      const { capture, exchange } = captures.exchange(req.captureId, req.exchangeId);
      const method = exchange.summary?.method ?? "";
      if (!SAFE_METHODS.has(method) && !req.confirm) {
        throw new FerryError("failed_precondition", "confirm_required", `replaying a ${method} may repeat what it did: set confirm to replay it`);
      }
      const answer = await deps.replayer.replay(exchange, principal(ctx).tokenId, capture.bodyBytes, ctx.signal);
      audit.record({
        action: "exchange.replay",
        actor: actor(ctx),
        tenant: capture.tenant,
        details: {
          captureId: capture.captureId,
          exchangeId: req.exchangeId,
          replayExchangeId: answer.summary?.exchangeId,
          target: capture.target,
          method,
          path: exchange.summary?.path,
          status: answer.summary?.status,
          confirmed: req.confirm,
        },
      });
      return answer;
    },

    async getCaller(_req, ctx) {
      const p = principal(ctx);
      const record = catalog.listTokens().find((t) => t.tokenId === p.tokenId);
      return {
        token: create(TokenSchema, { tokenId: p.tokenId, role: p.role, description: record?.description ?? "", createTime: record?.createTime }),
        nodeId: deps.nodeId,
      };
    },
  };
}
