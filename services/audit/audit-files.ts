import { closeSync, fstatSync, openSync, readdirSync, readSync } from "node:fs";
import { join } from "node:path";

/**
 * The audit directory's layout: per UTC day one file of events
 * (`YYYY-MM-DD.jsonl`: admin changes, connector events, refusals) and one of
 * request summaries (`YYYY-MM-DD.requests.jsonl`), each in id order. Request
 * summaries are kept apart because they are many and cheap to lose: the disk
 * budget deletes them first, so a flood of requests never costs the trail of
 * admin changes. Files written before the split hold both kinds in the
 * events file; readers do not care, they merge a day's files by id.
 */
export type AuditFileKind = "events" | "requests";

export interface AuditFile {
  day: string;
  kind: AuditFileKind;
  name: string;
}

const FILE_NAME = /^(\d{4}-\d{2}-\d{2})(\.requests)?\.jsonl$/;
const READ_CHUNK = 64 * 1024;

export function auditFileName(day: string, kind: AuditFileKind): string {
  return kind === "requests" ? `${day}.requests.jsonl` : `${day}.jsonl`;
}

/** The audit files in `dir`, oldest day first (events before requests within a day); other files are ignored. */
export function listAuditFiles(dir: string): AuditFile[] {
  const files: AuditFile[] = [];
  for (const name of readdirSync(dir)) {
    const m = FILE_NAME.exec(name);
    if (m) files.push({ day: m[1]!, kind: m[2] ? "requests" : "events", name });
  }
  return files.sort((a, b) => (a.day !== b.day ? (a.day < b.day ? -1 : 1) : a.kind === b.kind ? 0 : a.kind === "events" ? -1 : 1));
}

/** The id our writers put first on every line, read without parsing the line; undefined when the line does not start that way. */
export function leadingId(line: string): bigint | undefined {
  const m = /^\{"id":"([0-9]{1,20})"/.exec(line);
  return m ? BigInt(m[1]!) : undefined;
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

export function readFirstLine(path: string): string | undefined {
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
 * `terminatedOnly` leaves out a last line without its newline: a write in
 * progress (or torn by a crash) rather than an event.
 */
export function* readLinesBackward(path: string, terminatedOnly = false): Generator<string> {
  const fd = openSync(path, "r");
  try {
    let pos = fstatSync(fd).size;
    let rest = Buffer.alloc(0); // the start of a line whose beginning is in an earlier chunk
    let first = true;
    while (pos > 0) {
      const len = Math.min(READ_CHUNK, pos);
      pos -= len;
      const chunk = Buffer.alloc(len);
      readFully(fd, chunk, pos);
      const buf = rest.length > 0 ? Buffer.concat([chunk, rest]) : chunk;
      let end = buf.length;
      if (first && terminatedOnly) {
        const nl = buf.lastIndexOf(0x0a);
        end = nl < 0 ? 0 : nl + 1;
        if (nl < 0 && pos > 0) {
          // No newline in this chunk at all: the unterminated tail is longer; keep looking for its start.
          rest = Buffer.alloc(0);
          continue;
        }
      }
      first = false;
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

/**
 * The lines of several files holding disjoint id-ordered events, merged
 * newest first. A line whose id cannot be read comes out as soon as it is
 * reached (its reader decides what it is).
 */
export function* newestFirst(dir: string, names: readonly string[]): Generator<{ line: string; name: string; id: bigint | undefined }> {
  const heads = names.map((name) => {
    const lines = readLinesBackward(join(dir, name), true);
    return { name, lines, next: undefined as { line: string; id: bigint | undefined } | undefined };
  });
  const advance = (h: (typeof heads)[number]) => {
    const r = h.lines.next();
    h.next = r.done ? undefined : { line: r.value, id: leadingId(r.value) };
  };
  try {
    heads.forEach(advance);
    for (;;) {
      let pick: (typeof heads)[number] | undefined;
      for (const h of heads) {
        if (!h.next) continue;
        if (h.next.id === undefined) {
          pick = h;
          break;
        }
        if (!pick || (pick.next!.id !== undefined && h.next.id > pick.next!.id)) pick = h;
      }
      if (!pick) return;
      const { line, id } = pick.next!;
      advance(pick);
      yield { line, name: pick.name, id };
    }
  } finally {
    for (const h of heads) h.lines.return(undefined);
  }
}
