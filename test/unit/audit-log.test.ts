import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { FerryError } from "../../core/errors.js";
import { type AuditLog, type AuditLogOptions, createAuditLog } from "../../services/audit/audit-log.js";

// Real files in a temp dir, a real pino logger writing into an array, and a clock the test moves.
describe("AuditLog", () => {
  let dir: string;
  let logLines: Record<string, unknown>[];
  let clockMs: number;
  const open: AuditLog[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "ferry-audit-"));
    logLines = [];
    clockMs = Date.parse("2025-03-10T12:00:00.000Z");
  });
  afterEach(async () => {
    vi.useRealTimers();
    for (const a of open.splice(0)) await a.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const logger = pino({ level: "info" }, { write: (s: string) => logLines.push(JSON.parse(s) as Record<string, unknown>) });

  function start(options: AuditLogOptions = {}): AuditLog {
    const audit = createAuditLog(dir, logger, { now: () => new Date(clockMs), ...options });
    open.push(audit);
    return audit;
  }
  // Events and request summaries are kept in separate files per day.
  const file = (day: string, kind: "events" | "requests" = "events") => join(dir, "audit", kind === "events" ? `${day}.jsonl` : `${day}.requests.jsonl`);
  const lines = (day: string, kind: "events" | "requests" = "events") =>
    readFileSync(file(day, kind), "utf8")
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const all = async (audit: AuditLog) => (await audit.query({ pageSize: 1000 })).events;
  const tick = (ms = 1) => (clockMs += ms);

  it("gives increasing ids that carry on after a restart", async () => {
    let audit = start();
    audit.record({ action: "tenant.create", actor: "admin:t1", tenant: "acme" });
    tick();
    audit.recordRequest({ action: "request", actor: "client:10.0.0.1", tenant: "acme" });
    tick();
    audit.record({ action: "key.create", actor: "admin:t1", tenant: "acme" });
    await audit.close();
    expect(lines("2025-03-10").map((l) => l.id)).toEqual(["1", "3"]);
    expect(lines("2025-03-10", "requests").map((l) => l.id)).toEqual(["2"]);

    audit = start();
    tick();
    audit.record({ action: "tenant.delete", actor: "admin:t1", tenant: "acme" });
    expect((await all(audit)).map((e) => e.id)).toEqual([4n, 3n, 2n, 1n]);
  });

  it("has record() on disk when it returns, in proto JSON, and mirrored to the log at info", () => {
    const audit = start();
    audit.record({ action: "key.revoke", actor: "admin:t1", tenant: "acme", details: { keyId: "k1" } });
    const expected = {
      id: "1",
      time: "2025-03-10T12:00:00Z",
      action: "key.revoke",
      actor: "admin:t1",
      tenant: "acme",
      details: { keyId: "k1" },
    };
    expect(lines("2025-03-10")).toEqual([expected]);
    expect(logLines).toHaveLength(1);
    expect(logLines[0]).toMatchObject({ level: 30, msg: "key.revoke", audit: expected });
  });

  it("keeps callers of the old interface working (no tenant, no options)", async () => {
    const audit = createAuditLog(dir, logger);
    open.push(audit);
    audit.record({ action: "admin.refused", actor: "anonymous", details: { rpc: "ListTenants", reason: "missing token" } });
    const [event] = await all(audit);
    expect(event?.tenant).toBe("");
    expect(event?.details).toEqual({ rpc: "ListTenants", reason: "missing token" });
  });

  it("buffers recordRequest(): not on disk at once, visible to queries, written by close(), not mirrored", async () => {
    const audit = start();
    audit.recordRequest({ action: "request", actor: "client:10.0.0.1", tenant: "acme", details: { status: 200 } });
    expect(existsSync(file("2025-03-10", "requests"))).toBe(false);
    expect((await all(audit)).map((e) => e.action)).toEqual(["request"]);
    audit.recordRequest({ action: "request", actor: "client:10.0.0.1", tenant: "acme", details: { status: 404 } });
    await audit.close();
    expect(lines("2025-03-10", "requests").map((l) => (l.details as { status: number }).status)).toEqual([200, 404]);
    expect(logLines).toEqual([]);
  });

  it("writes bigint request details as strings, as record() does", async () => {
    const audit = start();
    audit.recordRequest({ action: "request", actor: "client:a", details: { bytesIn: 12345678901234567890n, status: 200 } });
    await audit.close();
    expect(lines("2025-03-10", "requests")[0]!.details).toEqual({ bytesIn: "12345678901234567890", status: 200 });
  });

  it("flushes request events after 100 ms, or at once when 64 KiB are pending", () => {
    vi.useFakeTimers();
    const audit = start();
    audit.recordRequest({ action: "request", actor: "client:a" });
    vi.advanceTimersByTime(99);
    expect(existsSync(file("2025-03-10", "requests"))).toBe(false);
    vi.advanceTimersByTime(1);
    expect(lines("2025-03-10", "requests")).toHaveLength(1);

    const padding = "x".repeat(1024);
    let n = 0;
    while (lines("2025-03-10", "requests").length === 1) {
      audit.recordRequest({ action: "request", actor: "client:a", details: { padding } });
      n++;
    }
    expect(n).toBeGreaterThan(55);
    expect(n).toBeLessThan(70);
    expect(lines("2025-03-10", "requests")).toHaveLength(1 + n);
  });

  it("keeps each file in id order when record() and recordRequest() interleave, and merges them by id", async () => {
    const audit = start();
    for (let i = 0; i < 30; i++) {
      if (i % 4 === 0) audit.record({ action: "connector.connect", actor: "connector:k1" });
      else audit.recordRequest({ action: "request", actor: "client:a" });
      tick();
    }
    const merged = (await all(audit)).map((e) => Number(e.id));
    await audit.close();
    const ids = (kind: "events" | "requests") => lines("2025-03-10", kind).map((l) => Number(l.id));
    expect(ids("events")).toEqual(Array.from({ length: 8 }, (_, i) => 4 * i + 1));
    expect(ids("requests")).toEqual(Array.from({ length: 30 }, (_, i) => i + 1).filter((i) => i % 4 !== 1));
    expect(merged).toEqual(Array.from({ length: 30 }, (_, i) => 30 - i));
  });

  it("filters by tenant, actor, action prefix and time range (start inclusive, end exclusive)", async () => {
    const audit = start();
    const t0 = clockMs;
    audit.record({ action: "key.create", actor: "admin:t1", tenant: "acme" }); // t0
    tick(1000);
    audit.record({ action: "key.revoke", actor: "admin:t2", tenant: "acme" }); // t0+1s
    tick(1000);
    audit.record({ action: "keys.other", actor: "admin:t1", tenant: "globex" }); // t0+2s
    tick(1000);
    audit.recordRequest({ action: "request", actor: "client:10.0.0.1", tenant: "acme" }); // t0+3s
    const ids = async (q: Parameters<AuditLog["query"]>[0]) => (await audit.query(q)).events.map((e) => Number(e.id));

    expect(await ids({ pageSize: 10, tenant: "acme" })).toEqual([4, 2, 1]);
    expect(await ids({ pageSize: 10, actor: "admin:t1" })).toEqual([3, 1]);
    expect(await ids({ pageSize: 10, action: "key." })).toEqual([2, 1]);
    expect(await ids({ pageSize: 10, action: "key" })).toEqual([3, 2, 1]);
    expect(await ids({ pageSize: 10, tenant: "acme", actor: "admin:t2", action: "key." })).toEqual([2]);
    expect(await ids({ pageSize: 10, tenant: "", actor: "", action: "" })).toEqual([4, 3, 2, 1]);
    expect(await ids({ pageSize: 10, startTime: new Date(t0 + 1000) })).toEqual([4, 3, 2]);
    expect(await ids({ pageSize: 10, endTime: new Date(t0 + 2000) })).toEqual([2, 1]);
    expect(await ids({ pageSize: 10, startTime: new Date(t0 + 1000), endTime: new Date(t0 + 3000) })).toEqual([3, 2]);
    expect(await ids({ pageSize: 10, startTime: new Date(t0 + 1000), endTime: new Date(t0 + 1000) })).toEqual([]);
    expect(await ids({ pageSize: 10, startTime: new Date(t0 + 1001), endTime: new Date(t0 + 2001) })).toEqual([3]);
  });

  it("pages newest first with no gaps or duplicates", async () => {
    const audit = start();
    for (let i = 0; i < 250; i++) {
      if (i % 10 === 0) audit.record({ action: "tenant.update", actor: "admin:t1" });
      else audit.recordRequest({ action: "request", actor: "client:a" });
      tick(10);
    }
    const seen: bigint[] = [];
    const sizes: number[] = [];
    let token = "";
    do {
      const page = await audit.query({ pageSize: 100, pageToken: token });
      sizes.push(page.events.length);
      seen.push(...page.events.map((e) => e.id));
      token = page.nextPageToken;
    } while (token !== "");
    expect(sizes).toEqual([100, 100, 50]);
    expect(seen).toEqual(Array.from({ length: 250 }, (_, i) => BigInt(250 - i)));
  });

  it("pages across files and with filters", async () => {
    const audit = start();
    for (let i = 0; i < 60; i++) {
      audit.record({ action: i % 2 ? "key.create" : "request", actor: "admin:t1" });
      tick(3 * 3600_000); // 8 events a day: 8 files
    }
    const seen: bigint[] = [];
    let token: string | undefined;
    do {
      const page = await audit.query({ pageSize: 7, action: "key.", pageToken: token });
      seen.push(...page.events.map((e) => e.id));
      token = page.nextPageToken;
    } while (token !== "");
    expect(seen).toEqual(Array.from({ length: 30 }, (_, i) => BigInt(60 - 2 * i)));
  });

  it("reads files larger than its read chunk: lines across chunk edges, multi-byte text, a line longer than a chunk", async () => {
    const audit = start();
    const text = "Grüße ✓ 🚢 ".repeat(10);
    for (let i = 1; i <= 2500; i++) {
      const details = i === 1234 ? { text: "🚢".repeat(50_000) } : { i, text };
      audit.recordRequest({ action: "request", actor: "client:a", details });
    }
    expect(statSync(file("2025-03-10", "requests")).size).toBeGreaterThan(700_000);
    const seen: bigint[] = [];
    let token = "";
    do {
      const page = await audit.query({ pageSize: 1000, pageToken: token });
      for (const e of page.events) {
        expect(e.details).toEqual(e.id === 1234n ? { text: "🚢".repeat(50_000) } : { i: Number(e.id), text });
        seen.push(e.id);
      }
      token = page.nextPageToken;
    } while (token !== "");
    expect(seen).toEqual(Array.from({ length: 2500 }, (_, i) => BigInt(2500 - i)));
  });

  it("rejects page tokens it did not issue, and page sizes outside 1..1000", async () => {
    const audit = start();
    for (let i = 0; i < 5; i++) audit.record({ action: "a", actor: "b" });
    const good = (await audit.query({ pageSize: 2 })).nextPageToken;
    expect((await audit.query({ pageSize: 2, pageToken: good })).events.map((e) => e.id)).toEqual([3n, 2n]);
    const bad = [
      "garbage!",
      "bm90LWEtbnVtYmVy", // "not-a-number"
      Buffer.from("0").toString("base64url"),
      Buffer.from("007").toString("base64url"),
      Buffer.from("99").toString("base64url"), // beyond the last id
      `${good}=`,
    ];
    for (const pageToken of bad) {
      let caught: unknown;
      try {
        await audit.query({ pageSize: 2, pageToken });
      } catch (err) {
        caught = err;
      }
      expect(caught, pageToken).toBeInstanceOf(FerryError);
      expect(caught).toMatchObject({ kind: "invalid_argument", code: "invalid_page_token" });
    }
    for (const pageSize of [0, 1001, 1.5, Number.NaN]) {
      await expect(audit.query({ pageSize })).rejects.toMatchObject({ kind: "invalid_argument" });
    }
  });

  it("skips torn and corrupt lines, continues ids past a torn tail, and never glues onto it", async () => {
    let audit = start();
    audit.record({ action: "one", actor: "a" });
    audit.record({ action: "two", actor: "a" });
    await audit.close();
    // A line of garbage in the middle, then a crash halfway through a write.
    appendFileSync(file("2025-03-10"), 'not json\n{"id":"7"\n{"id":"3","time":"2025-03-10T12:00:00Z","act');

    audit = start();
    audit.record({ action: "three", actor: "a" });
    const events = await all(audit);
    expect(events.map((e) => [e.id, e.action])).toEqual([
      [3n, "three"],
      [2n, "two"],
      [1n, "one"],
    ]);
    const warnings = logLines.filter((l) => l.level === 40);
    expect(warnings.map((l) => l.msg)).toEqual([
      "audit file ends in unreadable lines; skipping them", // at open
      "audit file has unreadable lines; skipping them", // once for the file, not once per line
    ]);
    const raw = readFileSync(file("2025-03-10"), "utf8").split("\n");
    expect(JSON.parse(raw.at(-2) ?? "")).toMatchObject({ id: "3", action: "three" });
  });

  it("starts a new file at UTC midnight, also inside one buffered batch, and queries span both days", async () => {
    clockMs = Date.parse("2025-03-10T23:59:59.950Z");
    const audit = start();
    audit.record({ action: "before", actor: "a" });
    audit.recordRequest({ action: "request.before", actor: "a" });
    tick(100);
    audit.recordRequest({ action: "request.after", actor: "a" });
    audit.record({ action: "after", actor: "a" });
    await audit.close();
    expect(lines("2025-03-10").map((l) => l.action)).toEqual(["before"]);
    expect(lines("2025-03-10", "requests").map((l) => l.action)).toEqual(["request.before"]);
    expect(lines("2025-03-11").map((l) => l.action)).toEqual(["after"]);
    expect(lines("2025-03-11", "requests").map((l) => l.action)).toEqual(["request.after"]);
    expect((await all(audit)).map((e) => e.action)).toEqual(["after", "request.after", "request.before", "before"]);
    const day1 = (await audit.query({ pageSize: 10, endTime: new Date("2025-03-11T00:00:00Z") })).events;
    expect(day1.map((e) => e.action)).toEqual(["request.before", "before"]);
    const day2 = (await audit.query({ pageSize: 10, startTime: new Date("2025-03-11T00:00:00Z") })).events;
    expect(day2.map((e) => e.action)).toEqual(["after", "request.after"]);
  });

  it("never lets time go back when the clock does", async () => {
    const audit = start();
    audit.record({ action: "a", actor: "x" });
    clockMs -= 2 * 86_400_000;
    audit.record({ action: "b", actor: "x" });
    const [b, a] = await all(audit);
    expect(b?.id).toBe(2n);
    expect(timestampMs(b!.time!)).toBe(timestampMs(a!.time!));
    expect(readdirSync(join(dir, "audit"))).toEqual(["2025-03-10.jsonl"]);
  });

  it("deletes files past retention at start and then daily, by file name", async () => {
    vi.useFakeTimers();
    const auditDir = join(dir, "audit");
    mkdirSync(auditDir);
    // The last event is in an old file: its id must survive the file's deletion.
    writeFileSync(join(auditDir, "2025-03-01.jsonl"), '{"id":"41","time":"2025-03-01T10:00:00Z","action":"a","actor":"x"}\n');
    writeFileSync(join(auditDir, "2025-03-02.jsonl"), "");
    writeFileSync(join(auditDir, "2025-03-03.jsonl"), "");
    writeFileSync(join(auditDir, "notes.txt"), "kept");
    const audit = start({ retentionDays: 7 }); // today 2025-03-10: keeps 03-03 .. 03-10
    expect(readdirSync(auditDir).sort()).toEqual(["2025-03-03.jsonl", "notes.txt"]);
    audit.record({ action: "b", actor: "x" });
    expect((await all(audit)).map((e) => e.id)).toEqual([42n]);

    tick(86_400_000);
    vi.advanceTimersByTime(86_400_000);
    expect(readdirSync(auditDir).sort()).toEqual(["2025-03-10.jsonl", "notes.txt"]);
    expect(logLines.filter((l) => l.msg === "audit files past retention deleted").map((l) => l.days)).toEqual([
      ["2025-03-01", "2025-03-02"],
      ["2025-03-03"],
    ]);
  });

  it("creates files 0600 in a 0700 directory", () => {
    const audit = start();
    audit.record({ action: "a", actor: "x" });
    expect(statSync(join(dir, "audit")).mode & 0o777).toBe(0o700);
    expect(statSync(file("2025-03-10")).mode & 0o777).toBe(0o600);
  });

  it("round-trips details, before and after as plain objects", async () => {
    let audit = start();
    const before = { name: "acme", disabled: false, limits: { rps: 10 }, targets: ["a", "b"], note: null };
    const after = { name: "acme", disabled: true, limits: { rps: 20.5 }, targets: [], note: "ü ✓ 🚢" };
    audit.record({ action: "tenant.update", actor: "admin:t1", tenant: "acme", before, after, details: {} });
    audit.recordRequest({ action: "request", actor: "client:a", details: { big: 2n ** 70n, gone: undefined } });
    await audit.close();
    audit = start();
    const [req, update] = await all(audit);
    expect(update?.before).toEqual(before);
    expect(update?.after).toEqual(after);
    expect(update?.details).toEqual({});
    expect(req?.details).toEqual({ big: (2n ** 70n).toString() });
    expect(req?.before).toBeUndefined();
  });

  it("logs write failures instead of throwing, and still writes events that arrive after close()", async () => {
    const audit = start();
    rmSync(join(dir, "audit"), { recursive: true });
    expect(() => audit.record({ action: "a", actor: "x" })).not.toThrow();
    expect(logLines.filter((l) => l.level === 50).map((l) => l.msg)).toEqual(["audit event not written"]);
    expect(logLines.some((l) => l.msg === "a" && l.level === 30)).toBe(true); // the mirror still has it

    mkdirSync(join(dir, "audit"));
    await audit.close();
    audit.record({ action: "late", actor: "x" });
    audit.recordRequest({ action: "late.request", actor: "x" });
    expect(lines("2025-03-10").map((l) => [l.id, l.action])).toEqual([["2", "late"]]);
    expect(lines("2025-03-10", "requests").map((l) => [l.id, l.action])).toEqual([["3", "late.request"]]);
  });
});
