import { closeSync, fstatSync, mkdirSync, openSync, readSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import { create, type JsonObject, toJson } from "@bufbuild/protobuf";
import { timestampFromDate, timestampMs } from "@bufbuild/protobuf/wkt";
import { FerryError } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import { type AuditEvent, AuditEventSchema } from "../../gen/ferry/admin/v1/admin_service_pb.js";
import type { PeerFaults } from "../limits/peer-faults.js";
import { type AuditBudget, type AuditTier, createAuditBudget } from "./audit-budget.js";
import { type AuditFileKind, auditFileName, listAuditFiles, readLinesBackward } from "./audit-files.js";
import { parseLine, type TenantScope } from "./audit-scan.js";
import { scanInWorker } from "./audit-scan-worker.js";

export { auditFieldsMatch, type TenantScope } from "./audit-scan.js";

/** An event to audit. details/before/after are plain JSON objects (never secrets). */
export interface AuditInput {
  /** Dotted verb, e.g. "tenant.create", "connector.refused", "request". */
  action: string;
  /** "admin:<token id>", "connector:<key id>", "client:<address>" or "anonymous". */
  actor: string;
  tenant?: string;
  /** The tenant's id (Tenant.id); looked up by name (options.tenantIdOf) when not given. */
  tenantId?: string;
  details?: Record<string, unknown>;
  before?: Record<string, unknown>;
  after?: Record<string, unknown>;
}

export interface AuditQuery {
  tenant?: string;
  /** Only events of the tenant that has the name now (see TenantScope); set with `tenant`. */
  tenantScope?: TenantScope;
  actor?: string;
  /** Prefix match: "key." matches key.create and key.revoke. */
  action?: string;
  /** Inclusive. */
  startTime?: Date;
  /** Exclusive. */
  endTime?: Date;
  /** 1..1000 */
  pageSize: number;
  /** nextPageToken of the previous page, or "" / undefined for the first. */
  pageToken?: string;
}

export interface AuditLog {
  /** Admin changes and connector events: written to disk before record() returns, and mirrored to the log at info as { audit: <event as proto JSON> } with the action as the message. */
  record(event: AuditInput): void;
  /** Per-request summaries: high volume, so buffered and appended at most ~100 ms later (or when 64 KiB are pending); not mirrored to the log. */
  recordRequest(event: AuditInput): void;
  /** Newest first, read in a worker thread. Rejects with FerryError("invalid_argument", "invalid_page_token", ...) for a token it did not issue. */
  query(q: AuditQuery): Promise<{ events: AuditEvent[]; nextPageToken: string }>;
  /** Writes what is buffered and stops timers. */
  close(): Promise<void>;
}

export interface AuditLogOptions {
  /** Days of audit files kept (default 30); older files are deleted at start and daily. */
  retentionDays?: number;
  /** Clock for tests (default () => new Date()). */
  now?: () => Date;
  /** Also hands every event's JSON line here (a cluster publishes them to its audit stream). */
  mirror?: (line: string) => void;
  /** Most bytes of audit files kept (limits.auditMaxBytes): see audit-budget.ts (default: no limit but retention). */
  maxBytes?: number;
  /** The id of the tenant of that name now, or undefined; called once per event about a tenant, so it must be cheap (a map lookup). */
  tenantIdOf?: (tenant: string) => string | undefined;
  /** Counts events the disk budget left out (ferry_limit_refusals_total{limit="auditMaxBytes"}). */
  faults?: PeerFaults;
}

const DAY_MS = 86_400_000;
const FLUSH_MS = 100;
const FLUSH_BYTES = 64 * 1024;
const MAX_PAGE_SIZE = 1000;

/**
 * The audit trail: JSON-lines files per UTC day under <dir>/audit
 * (audit-files.ts: events, and request summaries apart), each line an
 * AuditEvent in proto JSON, so the stored format is the API's format and
 * needs no schema of its own.
 *
 * Ids and times only grow, and a file holds one day: so file order, line
 * order, id order and time order are all the same order. Queries rely on
 * that to read newest first and to skip whole days; the page token is just
 * the last id returned. They run in a worker thread (audit-scan-worker.ts).
 *
 * One writer per directory (the relay's state LOCK sees to that).
 */
export function createAuditLog(dir: string, log: Logger, options: AuditLogOptions = {}): AuditLog {
  return new FileAuditLog(join(dir, "audit"), log, options);
}

interface Pending {
  day: string;
  line: string;
}

/** An open file being appended to. */
interface Appender {
  name: string;
  fd: number;
  /** The file does not end in a newline (a torn write): start the next write on a line of its own. */
  needsNewline: boolean;
}

class FileAuditLog implements AuditLog {
  private readonly now: () => Date;
  private readonly mirror: ((line: string) => void) | undefined;
  private readonly tenantIdOf: ((tenant: string) => string | undefined) | undefined;
  private readonly retentionDays: number;
  private readonly budget: AuditBudget;
  private lastId = 0n;
  /** Time of the last event; a clock stepping back never makes time go back (see stamp). */
  private lastMs = Number.NEGATIVE_INFINITY;
  private readonly open: Partial<Record<AuditFileKind, Appender>> = {};
  private pending: Pending[] = [];
  private pendingBytes = 0;
  private flushTimer: NodeJS.Timeout | undefined;
  private readonly pruneTimer: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly dir: string,
    private readonly log: Logger,
    options: AuditLogOptions,
  ) {
    this.now = options.now ?? (() => new Date());
    this.mirror = options.mirror;
    this.tenantIdOf = options.tenantIdOf;
    this.retentionDays = options.retentionDays ?? 30;
    if (!Number.isInteger(this.retentionDays) || this.retentionDays < 1) {
      throw new Error(`audit retention must be a whole number of days, at least 1 (got ${this.retentionDays})`);
    }
    // A data directory we cannot write is a startup error; after this, write errors are only logged.
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // Before pruning: if every file is past retention, the last id must still be known.
    const last = this.findLast();
    if (last) {
      this.lastId = last.id;
      if (last.time) this.lastMs = timestampMs(last.time);
    }
    this.budget = createAuditBudget({
      dir,
      maxBytes: options.maxBytes ?? Number.POSITIVE_INFINITY,
      remove: (name) => this.deleteFile(name),
      log,
      faults: options.faults,
      now: () => this.now().getTime(),
    });
    this.prune();
    this.pruneTimer = setInterval(() => this.prune(), DAY_MS);
    this.pruneTimer.unref();
  }

  record(input: AuditInput): void {
    let day: string;
    let json: JsonObject;
    try {
      const event = this.stamp(input);
      day = dayOf(this.lastMs);
      json = toJson(AuditEventSchema, event) as JsonObject;
    } catch (err) {
      this.log.error({ err, action: input.action }, "audit event not recorded");
      return;
    }
    // The log line first: if the disk fails (or its budget is spent), the event is still somewhere.
    this.log.info({ audit: json }, input.action);
    const line = JSON.stringify(json);
    this.mirror?.(line);
    const text = `${line}\n`;
    if (!this.budget.admit(Buffer.byteLength(text), tierOf(input), day, "events")) return;
    try {
      this.append(day, "events", text);
    } catch (err) {
      this.budget.unwrite(auditFileName(day, "events"), Buffer.byteLength(text));
      this.log.error({ err, audit: json }, "audit event not written");
    }
  }

  recordRequest(input: AuditInput): void {
    try {
      const json = this.requestLine(input);
      this.mirror?.(json);
      const line = `${json}\n`;
      const day = dayOf(this.lastMs);
      const bytes = Buffer.byteLength(line);
      if (!this.budget.admit(bytes, "request", day, "requests")) return;
      this.pending.push({ day, line });
      this.pendingBytes += bytes;
    } catch (err) {
      this.log.error({ err, action: input.action }, "audit request event not recorded");
      return;
    }
    if (this.closed || this.pendingBytes >= FLUSH_BYTES) {
      this.flushRequests();
    } else if (this.flushTimer === undefined) {
      this.flushTimer = setTimeout(() => this.flushRequests(), FLUSH_MS);
      this.flushTimer.unref();
    }
  }

  async query(q: AuditQuery): Promise<{ events: AuditEvent[]; nextPageToken: string }> {
    if (!Number.isInteger(q.pageSize) || q.pageSize < 1 || q.pageSize > MAX_PAGE_SIZE) {
      throw new FerryError("invalid_argument", "invalid_page_size", `page size must be 1..${MAX_PAGE_SIZE}`);
    }
    const below = q.pageToken ? this.decodeToken(q.pageToken) : undefined;
    this.flushRequests();
    const r = await scanInWorker({
      dir: this.dir,
      tenant: q.tenant,
      tenantScope: q.tenantScope,
      actor: q.actor,
      action: q.action,
      startMs: q.startTime?.getTime(),
      endMs: q.endTime?.getTime(),
      pageSize: q.pageSize,
      below,
      maxId: this.lastId,
    });
    for (const file of r.unreadable) this.log.warn({ file }, "audit file has unreadable lines; skipping them");
    return { events: r.events, nextPageToken: r.next === undefined ? "" : encodeToken(r.next) };
  }

  async close(): Promise<void> {
    this.flushRequests();
    clearInterval(this.pruneTimer);
    this.closed = true;
    this.closeFile("events");
    this.closeFile("requests");
  }

  /** The tenant id an event carries: given, or the current tenant of its name. */
  private tenantIdFor(input: AuditInput): string {
    if (input.tenantId !== undefined || !input.tenant || !this.tenantIdOf) return input.tenantId ?? "";
    try {
      return this.tenantIdOf(input.tenant) ?? "";
    } catch {
      return ""; // an event without its tenant's id still beats no event
    }
  }

  /**
   * Gives the event its id and time. Time never goes back, even when the
   * clock does (NTP step, VM resume): id order and time order stay one order,
   * which keeps each day's file in id order and lets queries skip by day.
   */
  private stamp(input: AuditInput): AuditEvent {
    this.lastMs = Math.max(this.now().getTime(), this.lastMs);
    return create(AuditEventSchema, {
      id: ++this.lastId,
      time: timestampFromDate(new Date(this.lastMs)),
      action: input.action,
      actor: input.actor,
      tenant: input.tenant ?? "",
      tenantId: this.tenantIdFor(input),
      details: toStruct(input.details),
      before: toStruct(input.before),
      after: toStruct(input.after),
    });
  }

  /**
   * The proto JSON of a request summary, written by hand: one is made per
   * request, and building an AuditEvent message to convert it costs more than
   * the rest of the audit path. Same shape as toJson(AuditEventSchema, ...):
   * uint64 id as a string, RFC 3339 time, empty fields left out, fields in
   * proto order (id first: readers merge files by it without parsing lines).
   */
  private requestLine(input: AuditInput): string {
    this.lastMs = Math.max(this.now().getTime(), this.lastMs);
    const line: Record<string, unknown> = {
      id: String(++this.lastId),
      time: timeOf(this.lastMs),
      action: input.action,
      actor: input.actor,
    };
    if (input.tenant) line.tenant = input.tenant;
    if (input.details) line.details = input.details;
    const tenantId = this.tenantIdFor(input);
    if (tenantId) line.tenantId = tenantId;
    try {
      // Without a replacer: V8's fast path, several times faster, and request details are plain numbers and strings.
      return JSON.stringify(line);
    } catch {
      // As toStruct does: bigints become strings (Struct has no integer type).
      return JSON.stringify(line, (_, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
    }
  }

  /** Appends buffered request events, each run of one day to that day's file. Errors drop the batch (memory stays bounded) and are logged. */
  private flushRequests(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const pending = this.pending;
    if (pending.length === 0) return;
    this.pending = [];
    this.pendingBytes = 0;
    const runs: Pending[] = [];
    for (const p of pending) {
      const run = runs.at(-1);
      if (run?.day === p.day) run.line += p.line;
      else runs.push({ ...p });
    }
    for (const run of runs) {
      try {
        this.append(run.day, "requests", run.line);
      } catch (err) {
        this.budget.unwrite(auditFileName(run.day, "requests"), Buffer.byteLength(run.line));
        this.log.error({ err, day: run.day }, "audit request events not written");
      }
    }
  }

  /** Writes whole lines to a day's file; throws on failure. After close() each write opens and closes the file, so late events (tunnels ending during shutdown) are not lost. */
  private append(day: string, kind: AuditFileKind, text: string): void {
    const name = auditFileName(day, kind);
    let file = this.open[kind];
    if (file?.name !== name) file = this.openFile(kind, name);
    const bytes = Buffer.from(file.needsNewline ? `\n${text}` : text);
    file.needsNewline = true; // until the last byte is down
    try {
      for (let off = 0; off < bytes.length; ) off += writeSync(file.fd, bytes, off);
      file.needsNewline = false;
    } finally {
      if (this.closed) this.closeFile(kind);
    }
  }

  private openFile(kind: AuditFileKind, name: string): Appender {
    this.closeFile(kind);
    // a+: appends, and lets us read the last byte to see whether a crash left a torn line.
    const fd = openSync(join(this.dir, name), "a+", 0o600);
    let needsNewline: boolean;
    try {
      const size = fstatSync(fd).size;
      const last = Buffer.alloc(1);
      needsNewline = size > 0 && readSync(fd, last, 0, 1, size - 1) === 1 && last[0] !== 0x0a;
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    const file = { name, fd, needsNewline };
    this.open[kind] = file;
    return file;
  }

  private closeFile(kind: AuditFileKind): void {
    const file = this.open[kind];
    if (!file) return;
    try {
      closeSync(file.fd);
    } catch (err) {
      this.log.warn({ err }, "audit file close failed");
    }
    this.open[kind] = undefined;
  }

  private deleteFile(name: string): void {
    for (const kind of ["events", "requests"] as const) if (this.open[kind]?.name === name) this.closeFile(kind);
    unlinkSync(join(this.dir, name));
  }

  /** The newest readable event on disk: the last line of a day's files, or before it if a crash tore the last write. */
  private findLast(): AuditEvent | undefined {
    const files = listAuditFiles(this.dir);
    for (const day of [...new Set(files.map((f) => f.day))].reverse()) {
      const newest = files
        .filter((f) => f.day === day)
        .map((f) => this.lastIn(join(this.dir, f.name)))
        .reduce((a, b) => (b && (!a || b.id > a.id) ? b : a), undefined);
      if (newest) return newest;
    }
    return undefined;
  }

  private lastIn(path: string): AuditEvent | undefined {
    let skipped = 0;
    for (const line of readLinesBackward(path)) {
      const event = parseLine(line);
      if (event) {
        if (skipped > 0) this.log.warn({ file: path, skipped }, "audit file ends in unreadable lines; skipping them");
        return event;
      }
      skipped++;
    }
    return undefined;
  }

  /** Deletes files whose day is more than retentionDays before today (so today and retentionDays days before it stay). */
  private prune(): void {
    try {
      const cutoff = dayOf(this.now().getTime() - this.retentionDays * DAY_MS);
      const deleted: string[] = [];
      for (const f of this.budget.files()) {
        if (f.day >= cutoff) break;
        this.budget.delete(f.name);
        deleted.push(f.day);
      }
      if (deleted.length > 0) this.log.info({ days: [...new Set(deleted)] }, "audit files past retention deleted");
    } catch (err) {
      this.log.error({ err }, "audit retention failed");
    }
  }

  /** A token is an id this log returned: canonical base64url of a decimal id no larger than the last id. */
  private decodeToken(token: string): bigint {
    const text = /^[A-Za-z0-9_-]{1,28}$/.test(token) ? Buffer.from(token, "base64url").toString("latin1") : "";
    if (!/^[1-9][0-9]{0,19}$/.test(text) || encodeToken(BigInt(text)) !== token || BigInt(text) > this.lastId + 1n) {
      throw new FerryError("invalid_argument", "invalid_page_token", "page token is not one this server issued");
    }
    return BigInt(text);
  }
}

/** Admin changes are what an operator did; denials, refusals and connector events are what peers caused. */
function tierOf(input: AuditInput): AuditTier {
  return input.actor.startsWith("admin:") && !input.action.startsWith("admin.") ? "admin" : "event";
}

function encodeToken(id: bigint): string {
  return Buffer.from(id.toString(), "latin1").toString("base64url");
}

/** The last millisecond stamped, as RFC 3339 and as its day: a busy relay stamps several requests in each one. */
let stampMs = Number.NaN;
let stampTime = "";
let stampDay = "";

function stamp(ms: number): void {
  if (ms === stampMs) return;
  const iso = new Date(ms).toISOString();
  stampMs = ms;
  stampTime = iso.replace(".000Z", "Z");
  stampDay = iso.slice(0, 10);
}

function timeOf(ms: number): string {
  stamp(ms);
  return stampTime;
}

function dayOf(ms: number): string {
  stamp(ms);
  return stampDay;
}

/** Plain JSON for a Struct: bigints become strings, undefined members go, Dates become ISO strings. */
function toStruct(value: Record<string, unknown> | undefined): JsonObject | undefined {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v))) as JsonObject;
  } catch (err) {
    // A cycle or a throwing toJSON: keep the event, say why its object is missing.
    return { unserializable: String(err) };
  }
}
