import { closeSync, fstatSync, mkdirSync, openSync, readdirSync, readSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import { create, fromJson, type JsonObject, toJson } from "@bufbuild/protobuf";
import { timestampFromDate, timestampMs } from "@bufbuild/protobuf/wkt";
import { FerryError } from "../../clients/sdk/errors.js";
import type { Logger } from "../../clients/sdk/logger.js";
import { type AuditEvent, AuditEventSchema } from "../../gen/ferry/admin/v1/admin_service_pb.js";

/** An event to audit. details/before/after are plain JSON objects (never secrets). */
export interface AuditInput {
  /** Dotted verb, e.g. "tenant.create", "connector.refused", "request". */
  action: string;
  /** "admin:<token id>", "connector:<key id>", "client:<address>" or "anonymous". */
  actor: string;
  tenant?: string;
  details?: Record<string, unknown>;
  before?: Record<string, unknown>;
  after?: Record<string, unknown>;
}

export interface AuditQuery {
  tenant?: string;
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
  /** Newest first. Throws FerryError("invalid_argument", "invalid_page_token", ...) for a token it did not issue. */
  query(q: AuditQuery): { events: AuditEvent[]; nextPageToken: string };
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
  /** Most bytes of audit files kept; the oldest days go first beyond it (default: no limit but retention). */
  maxBytes?: number;
}

const DAY_MS = 86_400_000;
const FLUSH_MS = 100;
const FLUSH_BYTES = 64 * 1024;
const READ_CHUNK = 64 * 1024;
/** Most bytes of audit lines one query call reads before it returns a page (maybe short, maybe empty) to continue from. */
const MAX_SCAN_BYTES = 16 * 1024 * 1024;
const MAX_PAGE_SIZE = 1000;
const FILE_NAME = /^(\d{4}-\d{2}-\d{2})\.jsonl$/;

/**
 * The audit trail: one JSON-lines file per UTC day under <dir>/audit, each
 * line an AuditEvent in proto JSON, so the stored format is the API's format
 * and needs no schema of its own.
 *
 * Ids and times only grow, and a file holds one day: so file order, line
 * order, id order and time order are all the same order. Queries rely on
 * that to read newest first (files from newest, lines from the end) and to
 * skip whole files; the page token is just the last id returned.
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

class FileAuditLog implements AuditLog {
  private readonly now: () => Date;
  private readonly mirror: ((line: string) => void) | undefined;
  private readonly retentionDays: number;
  private lastId = 0n;
  /** Time of the last event; a clock stepping back never makes time go back (see stamp). */
  private lastMs = Number.NEGATIVE_INFINITY;
  private fd: number | undefined;
  private fdDay = "";
  /** The open file does not end in a newline (a torn write): start the next write on a line of its own. */
  private needsNewline = false;
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
    // The log line first: if the disk fails, the event is still somewhere.
    this.log.info({ audit: json }, input.action);
    // Buffered request events have smaller ids: they go first, so the file stays in id order.
    this.flushRequests();
    const line = JSON.stringify(json);
    this.mirror?.(line);
    try {
      this.append(day, `${line}\n`);
    } catch (err) {
      this.log.error({ err, audit: json }, "audit event not written");
    }
  }

  recordRequest(input: AuditInput): void {
    try {
      const json = this.requestLine(input);
      this.mirror?.(json);
      const line = `${json}\n`;
      this.pending.push({ day: dayOf(this.lastMs), line });
      this.pendingBytes += Buffer.byteLength(line);
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

  query(q: AuditQuery): { events: AuditEvent[]; nextPageToken: string } {
    if (!Number.isInteger(q.pageSize) || q.pageSize < 1 || q.pageSize > MAX_PAGE_SIZE) {
      throw new FerryError("invalid_argument", "invalid_page_size", `page size must be 1..${MAX_PAGE_SIZE}`);
    }
    const below = q.pageToken ? this.decodeToken(q.pageToken) : undefined;
    const startMs = q.startTime?.getTime();
    const endMs = q.endTime?.getTime();
    this.flushRequests();
    const events: AuditEvent[] = [];
    let scanned = 0;
    for (const day of this.days().reverse()) {
      const dayStartMs = Date.parse(`${day}T00:00:00Z`);
      if (startMs !== undefined && dayStartMs + DAY_MS <= startMs) break; // this file and all older ones end before the range
      if (endMs !== undefined && dayStartMs >= endMs) continue;
      const path = join(this.dir, `${day}.jsonl`);
      // Paging on: a file whose first event is already at or past the cursor has nothing for this page.
      const first = below === undefined ? undefined : parseLine(readFirstLine(path));
      if (first && below !== undefined && first.id >= below) continue;
      let warned = false;
      for (const line of readLinesBackward(path)) {
        const raw = parseJson(line);
        // Each call reads a bounded amount (the event loop serves every tenant's traffic
        // meanwhile); a selective filter over a large log pages on where the scan stopped.
        scanned += line.length;
        const rawId = typeof raw?.id === "string" && /^[0-9]{1,20}$/.test(raw.id) ? BigInt(raw.id) : undefined;
        if (scanned > MAX_SCAN_BYTES && rawId !== undefined && (below === undefined || rawId < below)) {
          return { events, nextPageToken: encodeToken(rawId + 1n) };
        }
        if (raw !== undefined && !rawMatches(raw, q, below)) continue; // cheap filters before the full decode
        const event = raw === undefined ? undefined : decode(raw);
        if (!event) {
          if (!warned) this.log.warn({ file: path }, "audit file has unreadable lines; skipping them");
          warned = true;
          continue;
        }
        const ms = event.time ? timestampMs(event.time) : 0;
        if ((startMs !== undefined && ms < startMs) || (endMs !== undefined && ms >= endMs)) continue;
        events.push(event);
        if (events.length === q.pageSize) return { events, nextPageToken: encodeToken(event.id) };
      }
    }
    return { events, nextPageToken: "" };
  }

  async close(): Promise<void> {
    this.flushRequests();
    clearInterval(this.pruneTimer);
    this.closed = true;
    this.closeFile();
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
      details: toStruct(input.details),
      before: toStruct(input.before),
      after: toStruct(input.after),
    });
  }

  /**
   * The proto JSON of a request summary, written by hand: one is made per
   * request, and building an AuditEvent message to convert it costs more than
   * the rest of the audit path. Same shape as toJson(AuditEventSchema, ...):
   * uint64 id as a string, RFC 3339 time, empty fields left out.
   */
  private requestLine(input: AuditInput): string {
    this.lastMs = Math.max(this.now().getTime(), this.lastMs);
    const line: Record<string, unknown> = {
      id: String(++this.lastId),
      time: new Date(this.lastMs).toISOString().replace(".000Z", "Z"),
      action: input.action,
      actor: input.actor,
    };
    if (input.tenant) line.tenant = input.tenant;
    if (input.details) line.details = input.details;
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
        this.append(run.day, run.line);
      } catch (err) {
        this.log.error({ err, day: run.day }, "audit request events not written");
      }
    }
  }

  /** Writes whole lines to a day's file; throws on failure. After close() each write opens and closes the file, so late events (tunnels ending during shutdown) are not lost. */
  private append(day: string, text: string): void {
    if (this.fd === undefined || this.fdDay !== day) this.openFile(day);
    const fd = this.fd as number;
    const bytes = Buffer.from(this.needsNewline ? `\n${text}` : text);
    this.needsNewline = true; // until the last byte is down
    try {
      for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off);
      this.needsNewline = false;
    } finally {
      if (this.closed) this.closeFile();
    }
  }

  private openFile(day: string): void {
    this.closeFile();
    // a+: appends, and lets us read the last byte to see whether a crash left a torn line.
    const fd = openSync(join(this.dir, `${day}.jsonl`), "a+", 0o600);
    try {
      const size = fstatSync(fd).size;
      const last = Buffer.alloc(1);
      this.needsNewline = size > 0 && readSync(fd, last, 0, 1, size - 1) === 1 && last[0] !== 0x0a;
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    this.fd = fd;
    this.fdDay = day;
  }

  private closeFile(): void {
    if (this.fd === undefined) return;
    try {
      closeSync(this.fd);
    } catch (err) {
      this.log.warn({ err }, "audit file close failed");
    }
    this.fd = undefined;
    this.fdDay = "";
  }

  /** Days with a file, oldest first. */
  private days(): string[] {
    return readdirSync(this.dir)
      .map((name) => FILE_NAME.exec(name)?.[1])
      .filter((day): day is string => day !== undefined)
      .sort();
  }

  /** The newest readable event on disk: the last line, or before it if a crash tore the last write. */
  private findLast(): AuditEvent | undefined {
    for (const day of this.days().reverse()) {
      const path = join(this.dir, `${day}.jsonl`);
      let skipped = 0;
      for (const line of readLinesBackward(path)) {
        const event = parseLine(line);
        if (event) {
          if (skipped > 0) this.log.warn({ file: path, skipped }, "audit file ends in unreadable lines; skipping them");
          return event;
        }
        skipped++;
      }
    }
    return undefined;
  }

  /** Deletes files whose day is more than retentionDays before today (so today and retentionDays days before it stay). */
  private prune(): void {
    try {
      const cutoff = dayOf(this.now().getTime() - this.retentionDays * DAY_MS);
      const deleted: string[] = [];
      for (const day of this.days()) {
        if (day >= cutoff) break;
        if (day === this.fdDay) this.closeFile();
        unlinkSync(join(this.dir, `${day}.jsonl`));
        deleted.push(day);
      }
      if (deleted.length > 0) this.log.info({ days: deleted }, "audit files past retention deleted");
    } catch (err) {
      this.log.error({ err }, "audit retention failed");
    }
  }

  /** A token is an id this log returned: canonical base64url of a decimal id no larger than the last id. */
  private decodeToken(token: string): bigint {
    const text = /^[A-Za-z0-9_-]{1,28}$/.test(token) ? Buffer.from(token, "base64url").toString("latin1") : "";
    if (!/^[1-9][0-9]{0,19}$/.test(text) || encodeToken(BigInt(text)) !== token || BigInt(text) > this.lastId) {
      throw new FerryError("invalid_argument", "invalid_page_token", "page token is not one this server issued");
    }
    return BigInt(text);
  }
}

function encodeToken(id: bigint): string {
  return Buffer.from(id.toString(), "latin1").toString("base64url");
}

function dayOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
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

function parseJson(line: string): Record<string, unknown> | undefined {
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

function parseLine(line: string | undefined): AuditEvent | undefined {
  const raw = line === undefined ? undefined : parseJson(line);
  return raw === undefined ? undefined : decode(raw);
}

/** The filters that need no decoding. A line they cannot judge (odd id) passes, for decode() to reject. */
/** The query's tenant, actor and action filters, on an event's proto JSON (cheap: before the full decode). */
export function auditFieldsMatch(raw: Record<string, unknown>, q: AuditQuery): boolean {
  if (q.tenant && (raw.tenant ?? "") !== q.tenant) return false;
  if (q.actor && (raw.actor ?? "") !== q.actor) return false;
  if (q.action && !(typeof raw.action === "string" && raw.action.startsWith(q.action))) return false;
  return true;
}

function rawMatches(raw: Record<string, unknown>, q: AuditQuery, below: bigint | undefined): boolean {
  if (!auditFieldsMatch(raw, q)) return false;
  if (below !== undefined && typeof raw.id === "string" && /^[0-9]{1,20}$/.test(raw.id) && BigInt(raw.id) >= below) {
    return false;
  }
  return true;
}

function readFully(fd: number, buf: Buffer, position: number): number {
  let got = 0;
  while (got < buf.length) {
    const n = readSync(fd, buf, got, buf.length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

function readFirstLine(path: string): string | undefined {
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(READ_CHUNK);
    const n = readFully(fd, buf, 0);
    const end = buf.subarray(0, n).indexOf(0x0a);
    return end < 0 ? undefined : buf.toString("utf8", 0, end);
  } finally {
    closeSync(fd);
  }
}

/**
 * Lines from the end of a file to its start, non-empty ones only, reading a
 * chunk at a time so a day's file is never in memory whole. Splits on the
 * newline byte, which never occurs inside a multi-byte UTF-8 character.
 */
function* readLinesBackward(path: string): Generator<string> {
  const fd = openSync(path, "r");
  try {
    let pos = fstatSync(fd).size;
    let rest = Buffer.alloc(0); // the start of a line whose beginning is in an earlier chunk
    while (pos > 0) {
      const len = Math.min(READ_CHUNK, pos);
      pos -= len;
      const chunk = Buffer.alloc(len);
      readFully(fd, chunk, pos);
      const buf = rest.length > 0 ? Buffer.concat([chunk, rest]) : chunk;
      let end = buf.length;
      for (let nl = buf.lastIndexOf(0x0a, end - 1); nl >= 0; nl = nl > 0 ? buf.lastIndexOf(0x0a, nl - 1) : -1) {
        if (nl + 1 < end) yield buf.toString("utf8", nl + 1, end);
        end = nl;
      }
      rest = buf.subarray(0, end);
    }
    if (rest.length > 0) yield rest.toString("utf8");
  } finally {
    closeSync(fd);
  }
}
