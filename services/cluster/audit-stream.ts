import { fromJson, type JsonObject } from "@bufbuild/protobuf";
import { DeliverPolicy, DiscardPolicy, type NatsConnection, RetentionPolicy, StorageType } from "nats";
import { type AuditEvent, AuditEventSchema } from "../../gen/ferry/admin/v1/admin_service_pb.js";
import { FerryError } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import { type AuditQuery, auditFieldsMatch } from "../audit/audit-log.js";
import { parseJson } from "../audit/audit-scan.js";
import { retry } from "./kv-mirror.js";
import { AUDIT_STREAM, auditSubject } from "./subjects.js";

const DAY_MS = 86_400_000;
/** Messages read per step, newest window first. */
const WINDOW = 512;
/** Most messages one query call reads before it returns a page (maybe short) to continue from. */
const MAX_SCAN = 20_000;
const MAX_PAGE_SIZE = 1000;
/** The stream's size cap; each node's own files keep the full retention period. */
const MAX_BYTES = 2 * 1024 ** 3;
/**
 * Largest event the stream takes. The biggest legitimate one is a
 * tenant.update with before and after at their limits (1,000 allowed targets,
 * 1,000 denied serials: about 250 KB); request summaries are bounded by the
 * request head. Below NATS's default max_payload (1 MiB), so an oversized
 * line is refused here with a log line, not by the server in silence.
 */
export const MAX_EVENT_BYTES = 512 * 1024;
/**
 * Events wait this long (or for AUDIT_BATCH of them) and go out together: one
 * write to NATS for many requests instead of a write per request, which cost
 * an ingress node more CPU than the rest of its part in a cross-node request.
 */
const AUDIT_FLUSH_MS = 20;
const AUDIT_BATCH = 256;
const AUDIT_BATCH_BYTES = 256 * 1024;

export interface AuditStream {
  /** Publishes one audit event (its proto JSON line) within AUDIT_FLUSH_MS; fire and forget, the node's own file keeps it too. */
  publish(line: string): void;
  /** Sends what waits now (before the connection closes). */
  flush(): void;
  /** Newest first, across every node; event ids are stream sequence numbers. */
  query(q: AuditQuery): Promise<{ events: AuditEvent[]; nextPageToken: string }>;
}

/**
 * The cluster-wide audit trail: every node publishes its audit events to the
 * JetStream stream FERRY_AUDIT (kept for the retention period), so the admin
 * API on any node can list what happened on all of them. Each node also keeps
 * its own daily files, so an event is not lost while NATS is unreachable.
 */
export async function openAuditStream(opts: {
  nc: NatsConnection;
  nodeId: string;
  replicas: number;
  retentionDays: number;
  log: Logger;
  signal: AbortSignal;
}): Promise<AuditStream> {
  const { nc, log } = opts;
  const jsm = await retry("reach JetStream", log, opts.signal, () => nc.jetstreamManager({ timeout: 2_000 }));
  const config = {
    name: AUDIT_STREAM,
    subjects: [auditSubject("*")],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    num_replicas: opts.replicas,
    max_age: opts.retentionDays * DAY_MS * 1_000_000, // nanoseconds
    // One event per request adds up (~400 bytes each, on every server holding a replica): the oldest go first.
    max_bytes: MAX_BYTES,
    max_msg_size: MAX_EVENT_BYTES,
    discard: DiscardPolicy.Old,
  };
  await retry(`open stream ${AUDIT_STREAM}`, log, opts.signal, async () => {
    try {
      await jsm.streams.info(AUDIT_STREAM);
      await jsm.streams.update(AUDIT_STREAM, config);
    } catch (err) {
      if (!/stream not found/i.test(String(err))) throw err;
      await jsm.streams.add(config);
    }
  });
  const js = nc.jetstream({ timeout: 5_000 });
  const subject = auditSubject(opts.nodeId);
  const decoder = new TextDecoder();
  /** Events not yet handed to NATS, each its own message: its stream sequence is its id. */
  const waiting: Buffer[] = [];
  let waitingBytes = 0;
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    clearTimeout(timer);
    timer = undefined;
    try {
      for (const data of waiting) nc.publish(subject, data);
    } catch (err) {
      log.warn({ err: String(err), events: waiting.length }, "audit events not published to the cluster (kept in this node's file)");
    }
    waiting.length = 0;
    waitingBytes = 0;
  };

  /** Messages with sequence in [lo, hi], oldest first. */
  const readRange = async (lo: number, hi: number): Promise<Array<{ seq: number; data: Uint8Array }>> => {
    const consumer = await js.consumers.get(AUDIT_STREAM, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: lo });
    const out: Array<{ seq: number; data: Uint8Array }> = [];
    const messages = await consumer.fetch({ max_messages: hi - lo + 1, expires: 2_000 });
    for await (const m of messages) {
      if (m.seq > hi) break;
      out.push({ seq: m.seq, data: m.data });
      if (m.seq >= hi) break;
    }
    await consumer.delete().catch(() => {});
    return out;
  };

  return {
    publish(line) {
      const data = Buffer.from(line);
      if (data.byteLength > MAX_EVENT_BYTES) {
        log.warn({ bytes: data.byteLength, max: MAX_EVENT_BYTES }, "audit event too large for the cluster's stream (kept in this node's file)");
        return;
      }
      waiting.push(data);
      waitingBytes += data.byteLength;
      if (waiting.length >= AUDIT_BATCH || waitingBytes >= AUDIT_BATCH_BYTES) flush();
      else timer ??= setTimeout(flush, AUDIT_FLUSH_MS).unref();
    },
    flush,
    async query(q) {
      flush(); // what this node just did is part of the answer
      if (!Number.isInteger(q.pageSize) || q.pageSize < 1 || q.pageSize > MAX_PAGE_SIZE) {
        throw new FerryError("invalid_argument", "invalid_page_size", `page size must be 1..${MAX_PAGE_SIZE}`);
      }
      const below = q.pageToken ? decodeToken(q.pageToken) : undefined;
      const startMs = q.startTime?.getTime();
      const endMs = q.endTime?.getTime();
      const state = (await jsm.streams.info(AUDIT_STREAM)).state;
      let hi = Math.min(state.last_seq, below === undefined ? Number.MAX_SAFE_INTEGER : below - 1);
      const events: AuditEvent[] = [];
      let scanned = 0;
      while (hi >= state.first_seq && hi > 0) {
        const lo = Math.max(state.first_seq, hi - WINDOW + 1);
        const batch = await readRange(lo, hi);
        let newestMs = 0;
        for (let i = batch.length - 1; i >= 0; i--) {
          const { seq, data } = batch[i]!;
          // Anything with NATS rights can publish here: a message that is not an event object is skipped.
          const raw = parseJson(decoder.decode(data)) as JsonObject | undefined;
          if (raw === undefined) continue;
          const ms = typeof raw.time === "string" ? Date.parse(raw.time) : Number.NaN;
          if (Number.isNaN(ms)) continue;
          newestMs = Math.max(newestMs, ms);
          if (!auditFieldsMatch(raw, q) || (startMs !== undefined && ms < startMs) || (endMs !== undefined && ms >= endMs)) continue;
          let event: AuditEvent;
          try {
            event = fromJson(AuditEventSchema, { ...raw, id: String(seq) }, { ignoreUnknownFields: true });
          } catch {
            continue;
          }
          events.push(event);
          if (events.length === q.pageSize) return { events, nextPageToken: encodeToken(seq) };
        }
        scanned += hi - lo + 1;
        // Nodes' clocks differ a little, so a window is only skipped past when all of it is older than the range.
        if (startMs !== undefined && newestMs > 0 && newestMs < startMs) break;
        if (scanned >= MAX_SCAN && lo > state.first_seq) return { events, nextPageToken: encodeToken(lo) };
        hi = lo - 1;
      }
      return { events, nextPageToken: "" };
    },
  };
}

function encodeToken(seq: number): string {
  return Buffer.from(`s${seq}`).toString("base64url");
}

function decodeToken(token: string): number {
  const m = /^s([0-9]{1,15})$/.exec(Buffer.from(token, "base64url").toString("utf8"));
  if (!m) throw new FerryError("invalid_argument", "invalid_page_token", "page_token is not one this server issued");
  return Number(m[1]);
}
