import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type AuditLog, createAuditLog } from "../../services/audit/audit-log.js";
import { createPeerFaults, type PeerFaults } from "../../services/limits/peer-faults.js";

// Finding 7 (the audit part): limits.auditMaxBytes. The audit directory never
// holds more; old files go first, request summaries before events; when today
// alone fills it, request summaries stop first, connector events next, admin
// changes last (and those are still in the process log).
const MAX = 20_000;

describe("the audit disk budget", () => {
  let dir: string;
  let logLines: Record<string, unknown>[];
  let faults: PeerFaults;
  const open: AuditLog[] = [];
  const now = () => new Date("2025-03-10T12:00:00Z");
  const logger = pino({ level: "info" }, { write: (s: string) => logLines.push(JSON.parse(s) as Record<string, unknown>) });

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "ferry-budget-"));
    logLines = [];
    faults = createPeerFaults(logger);
  });
  afterEach(async () => {
    for (const a of open.splice(0)) await a.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const start = () => {
    const audit = createAuditLog(dir, logger, { now, maxBytes: MAX, faults });
    open.push(audit);
    return audit;
  };
  const auditDir = () => join(dir, "audit");
  const used = () => readdirSync(auditDir()).reduce((n, f) => n + statSync(join(auditDir(), f)).size, 0);
  const actions = (name: string) =>
    readFileSync(join(auditDir(), name), "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { action: string }).action);
  const padding = "p".repeat(100);

  it("never lets a flood fill the disk, and gives up request summaries, then connector events, before admin changes", async () => {
    const audit = start();
    let peak = 0;
    for (let i = 0; i < 400; i++) {
      audit.recordRequest({ action: "request", actor: "client:192.0.2.1", tenant: "acme", details: { i, padding } });
      if (i % 20 === 0) peak = Math.max(peak, (await audit.query({ pageSize: 1 }), used()));
    }
    await audit.query({ pageSize: 1 }); // flushes
    expect(used()).toBeLessThanOrEqual(MAX * 0.9);
    expect(used()).toBeGreaterThan(MAX * 0.85);
    const droppedRequests = faults.limits().get("auditMaxBytes") ?? 0;
    expect(droppedRequests).toBeGreaterThan(200);

    // A reconnect loop: connector events still fit above the request summaries, up to their own ceiling.
    for (let i = 0; i < 100; i++) audit.record({ action: "connector.connect", actor: "connector:k1", tenant: "acme", details: { i, padding } });
    expect(used()).toBeLessThanOrEqual(MAX * 0.95);
    expect(actions("2025-03-10.jsonl").length).toBeGreaterThan(0);
    const connectorEvents = actions("2025-03-10.jsonl").length;

    // Admin changes still go to disk after both floods.
    audit.record({ action: "tenant.update", actor: "admin:t1", tenant: "acme", details: { padding } });
    expect(actions("2025-03-10.jsonl")).toEqual([...Array(connectorEvents).fill("connector.connect"), "tenant.update"]);
    // Until the budget is spent: then they are only in the process log (which mirrors every admin change).
    for (let i = 0; i < 100; i++) audit.record({ action: "key.create", actor: "admin:t1", tenant: "acme", details: { i, padding } });
    peak = Math.max(peak, used());
    expect(peak).toBeLessThanOrEqual(MAX);
    expect(actions("2025-03-10.jsonl").filter((a) => a === "key.create").length).toBeLessThan(100);
    expect(logLines.filter((l) => l.msg === "key.create")).toHaveLength(100);

    // Counted, and each tier says so once (not once per event).
    expect(faults.limits().get("auditMaxBytes")).toBeGreaterThan(droppedRequests);
    const warnings = logLines.filter((l) => l.level === 40 && String(l.msg).startsWith("audit disk budget")).map((l) => l.msg);
    expect(warnings).toEqual([
      "audit disk budget reached: request summaries are no longer written to disk today (limits.auditMaxBytes)",
      "audit disk budget reached: connector events are no longer written to disk today (limits.auditMaxBytes)",
      "audit disk budget reached: admin changes are no longer written to disk today (limits.auditMaxBytes)",
    ]);
  });

  it("deletes the oldest files first, request summaries before events, and never an older day's events for request summaries", async () => {
    mkdirSync(auditDir(), { recursive: true });
    const line = (id: number, action: string) => `${JSON.stringify({ id: String(id), time: "2025-03-08T10:00:00Z", action, actor: "x", details: { padding } })}\n`;
    const fill = (name: string, bytes: number, first: number, action: string) => {
      let text = "";
      for (let id = first; text.length < bytes; id++) text += line(id, action);
      writeFileSync(join(auditDir(), name), text);
    };
    fill("2025-03-08.jsonl", 3000, 1, "tenant.create");
    fill("2025-03-08.requests.jsonl", 8000, 1000, "request");
    fill("2025-03-09.jsonl", 3000, 2000, "key.create");
    fill("2025-03-09.requests.jsonl", 8000, 3000, "request");
    // Over the budget at start (it was lowered): the oldest request summaries make room.
    const audit = start();
    expect(readdirSync(auditDir()).sort()).toEqual(["2025-03-08.jsonl", "2025-03-09.jsonl", "2025-03-09.requests.jsonl"]);
    expect(logLines.find((l) => l.msg === "audit files deleted to stay within limits.auditMaxBytes")?.files).toEqual(["2025-03-08.requests.jsonl"]);

    // Today's request summaries push out the older ones, never the older days' events.
    for (let i = 0; i < 400; i++) audit.recordRequest({ action: "request", actor: "client:a", details: { i, padding } });
    await audit.query({ pageSize: 1 });
    expect(readdirSync(auditDir()).sort()).toEqual(["2025-03-08.jsonl", "2025-03-09.jsonl", "2025-03-10.requests.jsonl"]);
    expect(used()).toBeLessThanOrEqual(MAX * 0.9);

    // Admin changes may push out older events, oldest first.
    for (let i = 0; i < 20; i++) audit.record({ action: "tenant.update", actor: "admin:t1", details: { i, padding } });
    expect(readdirSync(auditDir()).sort()).toEqual(["2025-03-09.jsonl", "2025-03-10.jsonl", "2025-03-10.requests.jsonl"]);
    expect(used()).toBeLessThanOrEqual(MAX);
    // The queries still read across what is left, newest first.
    const events = (await audit.query({ pageSize: 1000, action: "key.create" })).events;
    expect(events.length).toBeGreaterThan(0);
  });
});
