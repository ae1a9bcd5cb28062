import { create } from "@bufbuild/protobuf";
import { type Timestamp, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { randomBytes } from "node:crypto";
import {
  type Capture,
  type CapturedExchange,
  CapturedExchangeSchema,
  CaptureSchema,
  type HeaderField,
  HeaderFieldSchema,
} from "../../gen/ferry/admin/v1/admin_service_pb.js";
import { FerryError } from "../../core/errors.js";
import type { CaptureSink } from "../observability/exchange-record.js";
import { bodyHead } from "./body-head.js";
import { redactedFields, redactHeader, redactQuery } from "./redact.js";

/** What the gateway feeds a capture about one exchange; the observer finishes it with the summary. */
export interface CaptureTap extends CaptureSink {
  requestBody(chunk: Uint8Array): void;
  responseBody(chunk: Uint8Array): void;
  /** The response head as the client got it (Node's outgoing headers). */
  responseHead(headers: Record<string, number | string | string[] | undefined>): void;
}

export interface CaptureStart {
  tenant: string;
  target: string;
  durationMs: number;
  bodyBytes: number;
  actor: string;
}

export interface CaptureStore {
  start(spec: CaptureStart): Capture;
  stop(captureId: string): Capture;
  list(tenant?: string): Capture[];
  get(captureId: string): { capture: Capture; exchanges: CapturedExchange[] };
  exchange(captureId: string, exchangeId: string): { capture: Capture; exchange: CapturedExchange };
  /** A tap when a capture records this target now; undefined (at the cost of one map lookup) otherwise. */
  tap(tenant: string, target: string, rawHeaders: readonly string[], query: string): CaptureTap | undefined;
  forgetTenant(tenant: string): void;
  close(): void;
}

export interface CaptureLimits {
  /** Bytes one capture holds; the oldest exchanges go first beyond it (default 4 MiB). */
  maxBytesPerCapture: number;
  /** Captures a node keeps, recording or ended (default 16); the oldest ended one goes first for a new one. */
  maxCaptures: number;
  /** Captures recording at once for one tenant (default 2): one tenant cannot take every slot. */
  maxActivePerTenant: number;
  /** How long what a capture holds stays readable after it ends (default 1 hour). */
  keepAfterMs: number;
  /** Exchanges one capture records at once (default 64): each holds up to twice its body_bytes until it ends. */
  maxInFlight: number;
}

export const CAPTURE_LIMITS: Readonly<CaptureLimits> = Object.freeze({
  maxBytesPerCapture: 4 * 1024 * 1024,
  maxCaptures: 16,
  maxActivePerTenant: 2,
  keepAfterMs: 3_600_000,
  maxInFlight: 64,
});
export const MAX_CAPTURE_MS = 3_600_000;
export const MAX_BODY_BYTES = 65_536;
/** What one exchange costs beyond its headers and bodies (the summary and the objects), for the byte cap. */
const EXCHANGE_OVERHEAD = 512;

interface Held {
  info: Capture;
  /** Taps given out and not finished yet. */
  inFlight: number;
  /** Oldest first. */
  exchanges: Array<{ exchange: CapturedExchange; bytes: number }>;
}

/**
 * Time-boxed captures of one target's exchanges, in memory: request and
 * response headers (credentials redacted) and the first bytes of each body.
 * Every capture has a byte cap and an end; the node keeps a bounded number.
 */
export function createCaptureStore(nodeId: string, limits: CaptureLimits = CAPTURE_LIMITS, now: () => number = Date.now): CaptureStore {
  const captures = new Map<string, Held>();
  /** Recording captures by tenant: what tap() looks at on every request. */
  const recording = new Map<string, Held[]>();

  const sweep = () => {
    const t = now();
    for (const [id, h] of captures) {
      if (h.info.active && timestampMsOf(h.info.endTime) <= t) end(h);
      if (!h.info.active && timestampMsOf(h.info.expireTime) <= t) captures.delete(id);
    }
  };
  const end = (h: Held) => {
    h.info.active = false;
    const list = recording.get(h.info.tenant)?.filter((x) => x !== h) ?? [];
    if (list.length === 0) recording.delete(h.info.tenant);
    else recording.set(h.info.tenant, list);
  };
  const timer = setInterval(sweep, 1000);
  timer.unref();

  const heldOrThrow = (captureId: string): Held => {
    sweep();
    const h = captures.get(captureId);
    if (!h) {
      // "<node id>-<12 hex>": the node is all before the last 13 characters (node ids may hold '-' themselves).
      const elsewhere = /^[A-Za-z0-9_-]{1,64}-[0-9a-f]{12}$/.test(captureId) && captureId.slice(0, -13) !== nodeId;
      throw new FerryError(
        "not_found",
        "capture_not_found",
        elsewhere
          ? `capture "${captureId}" is kept by node "${captureId.slice(0, -13)}", the one it was started on: ask that node`
          : `there is no capture "${captureId.slice(0, 40)}" (it may have expired)`,
      );
    }
    return h;
  };

  const store = (h: Held, exchange: CapturedExchange, bytes: number) => {
    h.exchanges.push({ exchange, bytes });
    h.info.exchanges++;
    h.info.bytes += BigInt(bytes);
    while (h.info.bytes > h.info.maxBytes && h.exchanges.length > 0) {
      const old = h.exchanges.shift()!;
      h.info.bytes -= BigInt(old.bytes);
      h.info.exchanges--;
      h.info.dropped++;
    }
  };

  return {
    start(spec) {
      sweep();
      const active = recording.get(spec.tenant) ?? [];
      const same = active.find((h) => h.info.target === spec.target);
      if (same) throw new FerryError("already_exists", "capture_exists", `capture "${same.info.captureId}" records target "${spec.target}" already`);
      if (active.length >= limits.maxActivePerTenant) {
        throw new FerryError("resource_exhausted", "too_many_captures", `tenant "${spec.tenant}" has ${active.length} captures recording; stop one first`);
      }
      if (captures.size >= limits.maxCaptures) {
        const oldestEnded = [...captures.values()].find((h) => !h.info.active);
        if (!oldestEnded) throw new FerryError("resource_exhausted", "too_many_captures", `this node records ${captures.size} captures already; stop one first`);
        captures.delete(oldestEnded.info.captureId);
      }
      const t = now();
      const h: Held = {
        info: create(CaptureSchema, {
          captureId: `${nodeId}-${randomBytes(6).toString("hex")}`,
          tenant: spec.tenant,
          target: spec.target,
          startTime: timestampFromMs(t),
          endTime: timestampFromMs(t + spec.durationMs),
          expireTime: timestampFromMs(t + spec.durationMs + limits.keepAfterMs),
          bodyBytes: spec.bodyBytes,
          actor: spec.actor,
          maxBytes: BigInt(limits.maxBytesPerCapture),
          active: true,
        }),
        exchanges: [],
        inFlight: 0,
      };
      captures.set(h.info.captureId, h);
      recording.set(spec.tenant, [...active, h]);
      return h.info;
    },
    stop(captureId) {
      const h = heldOrThrow(captureId);
      if (h.info.active) {
        const t = now();
        end(h);
        h.info.endTime = timestampFromMs(t);
        h.info.expireTime = timestampFromMs(t + limits.keepAfterMs);
      }
      return h.info;
    },
    list(tenant) {
      sweep();
      return [...captures.values()]
        .filter((h) => tenant === undefined || h.info.tenant === tenant)
        .map((h) => h.info)
        .reverse();
    },
    get(captureId) {
      const h = heldOrThrow(captureId);
      return { capture: h.info, exchanges: h.exchanges.map((e) => e.exchange).reverse() };
    },
    exchange(captureId, exchangeId) {
      const h = heldOrThrow(captureId);
      const e = h.exchanges.find((x) => x.exchange.summary?.exchangeId === exchangeId);
      if (!e) throw new FerryError("not_found", "exchange_not_found", `capture "${captureId}" holds no exchange "${exchangeId.slice(0, 40)}"`);
      return { capture: h.info, exchange: e.exchange };
    },
    tap(tenant, target, rawHeaders, query) {
      const list = recording.get(tenant);
      if (list === undefined) return undefined;
      const h = list.find((x) => x.info.target === target);
      if (!h) return undefined;
      if (timestampMsOf(h.info.endTime) <= now()) {
        end(h);
        return undefined;
      }
      if (h.inFlight >= limits.maxInFlight) {
        // Bodies in flight are memory the byte cap does not see yet: beyond this many, the exchange goes unrecorded.
        h.info.dropped++;
        return undefined;
      }
      h.inFlight++;
      return createTap(h, rawHeaders, query, (exchange, bytes) => {
        h.inFlight--;
        store(h, exchange, bytes);
      });
    },
    forgetTenant(tenant) {
      recording.delete(tenant);
      for (const [id, h] of captures) if (h.info.tenant === tenant) captures.delete(id);
    },
    close() {
      clearInterval(timer);
    },
  };
}

function createTap(h: Held, rawHeaders: readonly string[], query: string, keep: (e: CapturedExchange, bytes: number) => void): CaptureTap {
  const requestHeaders = redactedFields(rawHeaders);
  let headerBytes = requestHeaders.reduce((n, f) => n + f.name.length + f.value.length, 0);
  const cleanQuery = redactQuery(query);
  const requestBody = bodyHead(h.info.bodyBytes);
  const responseBody = bodyHead(h.info.bodyBytes);
  const responseHeaders: HeaderField[] = [];
  return {
    requestBody: (chunk) => requestBody.add(chunk),
    responseBody: (chunk) => responseBody.add(chunk),
    responseHead(headers) {
      for (const [name, value] of Object.entries(headers)) {
        if (value === undefined) continue;
        for (const v of Array.isArray(value) ? value : [String(value)]) {
          const clean = redactHeader(name, v);
          headerBytes += name.length + clean.length;
          responseHeaders.push(create(HeaderFieldSchema, { name, value: clean }));
        }
      }
    },
    finish(summary) {
      const exchange = create(CapturedExchangeSchema, {
        summary,
        query: cleanQuery,
        requestHeaders,
        requestBody: requestBody.body(),
        requestBodyTruncated: requestBody.truncated,
        responseHeaders,
        responseBody: responseBody.body(),
        responseBodyTruncated: responseBody.truncated,
      });
      keep(exchange, EXCHANGE_OVERHEAD + headerBytes + cleanQuery.length + exchange.requestBody.length + exchange.responseBody.length);
      return h.info.captureId;
    },
  };
}

function timestampMsOf(t: Timestamp | undefined): number {
  return t ? timestampMs(t) : 0;
}
