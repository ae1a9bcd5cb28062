import { join } from "node:path";
import { fromJson, type JsonObject } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { type AuditEvent, AuditEventSchema } from "../../gen/ferry/admin/v1/admin_service_pb.js";
import { listAuditFiles, newestFirst, readFirstLine } from "./audit-files.js";

/**
 * Only the events of one tenant as it exists now, not of an earlier tenant
 * that had its name: the same tenant id, or, for events recorded before
 * tenants had ids, a time at or after the tenant's creation.
 */
export interface TenantScope {
  /** Tenant.id; "" for a tenant created before ids existed. */
  id: string;
  createMs: number;
}

/** The filters of one audit query, as the scan takes them (plain data: it crosses into a worker thread). */
export interface ScanFilter {
  tenant?: string;
  tenantScope?: TenantScope;
  actor?: string;
  /** Prefix match. */
  action?: string;
  /** Inclusive. */
  startMs?: number;
  /** Exclusive. */
  endMs?: number;
}

export interface ScanRequest extends ScanFilter {
  /** The audit directory. */
  dir: string;
  pageSize: number;
  /** Only ids below this (the page token's id). */
  below?: bigint;
  /** The last id recorded when the query began: anything newer is left for the next query. */
  maxId: bigint;
}

export interface ScanResult {
  events: AuditEvent[];
  /** Where the next page starts (ids below it), or undefined at the end. */
  next: bigint | undefined;
  /** Files with lines that did not decode (the caller logs them). */
  unreadable: string[];
}

const DAY_MS = 86_400_000;
/** Most bytes of audit lines one call reads before it returns a page (maybe short, maybe empty) to continue from. */
const MAX_SCAN_BYTES = 16 * 1024 * 1024;
/** Most bytes of events one page returns (they are copied to the event loop's thread and encoded there); the page ends early beyond. */
const MAX_PAGE_BYTES = 8 * 1024 * 1024;

/**
 * Reads a page of events, newest first. Ids and times only grow, and a file
 * holds one day, so days are read from the newest, each day's files merged by
 * id, and whole days outside the time range are skipped. Synchronous: it runs
 * in the audit worker thread (audit-scan-worker.ts), never on the event loop.
 */
export function scanAudit(req: ScanRequest): ScanResult {
  const { below, startMs, endMs } = req;
  const events: AuditEvent[] = [];
  const unreadable = new Set<string>();
  const byDay = new Map<string, string[]>();
  for (const f of listAuditFiles(req.dir)) byDay.set(f.day, [...(byDay.get(f.day) ?? []), f.name]);
  let scanned = 0;
  let pageBytes = 0;
  for (const [day, names] of [...byDay].reverse()) {
    const dayStartMs = Date.parse(`${day}T00:00:00Z`);
    if (startMs !== undefined && dayStartMs + DAY_MS <= startMs) break; // this day and all older ones end before the range
    if (endMs !== undefined && dayStartMs >= endMs) continue;
    // Paging on: a file whose first event is already at or past the cursor has nothing for this page.
    const live = below === undefined ? names : names.filter((n) => !((idOf(parseJson(readFirstLine(join(req.dir, n)))) ?? 0n) >= below));
    for (const { line, name, id } of newestFirst(req.dir, live)) {
      // Bounded work per call; a selective filter over a large log pages on where the scan stopped.
      scanned += line.length;
      if (id !== undefined && id > req.maxId) continue;
      if (scanned > MAX_SCAN_BYTES && id !== undefined && (below === undefined || id < below)) {
        return { events, next: id + 1n, unreadable: [...unreadable] };
      }
      const raw = parseJson(line);
      if (raw !== undefined && !rawMatches(raw, req, below)) continue; // cheap filters before the full decode
      const event = raw === undefined ? undefined : decode(raw);
      if (!event) {
        unreadable.add(join(req.dir, name));
        continue;
      }
      const ms = event.time ? timestampMs(event.time) : 0;
      if ((startMs !== undefined && ms < startMs) || (endMs !== undefined && ms >= endMs)) continue;
      events.push(event);
      pageBytes += line.length;
      if (events.length === req.pageSize || pageBytes > MAX_PAGE_BYTES) return { events, next: event.id, unreadable: [...unreadable] };
    }
  }
  return { events, next: undefined, unreadable: [...unreadable] };
}

/** The query's tenant, actor and action filters, on an event's proto JSON (cheap: before the full decode). */
export function auditFieldsMatch(raw: Record<string, unknown>, q: ScanFilter): boolean {
  if (q.tenant && (raw.tenant ?? "") !== q.tenant) return false;
  if (q.tenantScope && !ofTenant(raw, q.tenantScope)) return false;
  if (q.actor && (raw.actor ?? "") !== q.actor) return false;
  if (q.action && !(typeof raw.action === "string" && raw.action.startsWith(q.action))) return false;
  return true;
}

function ofTenant(raw: Record<string, unknown>, scope: TenantScope): boolean {
  const id = typeof raw.tenantId === "string" ? raw.tenantId : "";
  if (id !== "") return id === scope.id;
  // Recorded without an id: before ids existed, or about a tenant already gone. Only its time can tell.
  const ms = typeof raw.time === "string" ? Date.parse(raw.time) : Number.NaN;
  return ms >= scope.createMs;
}

function rawMatches(raw: Record<string, unknown>, q: ScanFilter, below: bigint | undefined): boolean {
  if (!auditFieldsMatch(raw, q)) return false;
  const id = idOf(raw);
  return below === undefined || id === undefined || id < below;
}

function idOf(raw: Record<string, unknown> | undefined): bigint | undefined {
  return typeof raw?.id === "string" && /^[0-9]{1,20}$/.test(raw.id) ? BigInt(raw.id) : undefined;
}

export function parseJson(line: string | undefined): Record<string, unknown> | undefined {
  if (line === undefined) return undefined;
  try {
    const raw: unknown = JSON.parse(line);
    return typeof raw === "object" && raw !== null && !Array.isArray(raw) ? (raw as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function decode(raw: Record<string, unknown>): AuditEvent | undefined {
  try {
    // Unknown fields ignored: files written by a newer relay stay readable.
    return fromJson(AuditEventSchema, raw as JsonObject, { ignoreUnknownFields: true });
  } catch {
    return undefined;
  }
}

export function parseLine(line: string | undefined): AuditEvent | undefined {
  const raw = parseJson(line);
  return raw === undefined ? undefined : decode(raw);
}
