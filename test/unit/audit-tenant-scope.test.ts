import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type AuditLog, createAuditLog } from "../../services/audit/audit-log.js";

// Finding 11 at the audit log: events carry the tenant's id, looked up by name
// at record time, and a tenant-scoped query returns only the current tenant's.
describe("tenant ids in the audit log", () => {
  let dir: string;
  let clockMs: number;
  const ids = new Map<string, string>();
  const open: AuditLog[] = [];
  const logger = pino({ level: "silent" });

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "ferry-scope-"));
    clockMs = Date.parse("2025-03-10T12:00:00.000Z");
    ids.clear();
  });
  afterEach(async () => {
    for (const a of open.splice(0)) await a.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const start = () => {
    const audit = createAuditLog(dir, logger, { now: () => new Date(clockMs), tenantIdOf: (name) => ids.get(name) });
    open.push(audit);
    return audit;
  };

  it("records the id of the tenant of that name now, for record() and request summaries; an explicit id wins", async () => {
    const audit = start();
    ids.set("acme", "a".repeat(32));
    audit.record({ action: "key.create", actor: "admin:t1", tenant: "acme" });
    audit.recordRequest({ action: "request", actor: "client:a", tenant: "acme" });
    audit.record({ action: "tenant.delete", actor: "admin:t1", tenant: "acme", tenantId: "b".repeat(32) });
    audit.record({ action: "admin.refused", actor: "anonymous" });
    audit.recordRequest({ action: "request", actor: "client:a", tenant: "unknown" });
    await audit.close();
    const read = (name: string) => readFileSync(join(dir, "audit", name), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as { tenantId?: string });
    expect(read("2025-03-10.jsonl").map((e) => e.tenantId)).toEqual(["a".repeat(32), "b".repeat(32), undefined]);
    expect(read("2025-03-10.requests.jsonl").map((e) => e.tenantId)).toEqual(["a".repeat(32), undefined]);
  });

  it("scopes a tenant query to one tenant: its id, or no id and not before its creation", async () => {
    mkdirSync(join(dir, "audit"));
    // Written before tenants had ids: one event of an older "acme", one of the current one.
    const legacy = [
      { id: "1", time: "2025-03-10T08:00:00Z", action: "request", actor: "client:old", tenant: "acme" },
      { id: "2", time: "2025-03-10T10:00:00Z", action: "request", actor: "client:new", tenant: "acme" },
    ];
    writeFileSync(join(dir, "audit", "2025-03-10.jsonl"), legacy.map((e) => `${JSON.stringify(e)}\n`).join(""));
    const audit = start();
    ids.set("acme", "c".repeat(32));
    audit.record({ action: "key.create", actor: "admin:t1", tenant: "acme" }); // id 3, the current tenant
    audit.record({ action: "key.create", actor: "admin:t1", tenant: "acme", tenantId: "d".repeat(32) }); // id 4, another one
    audit.record({ action: "key.create", actor: "admin:t1", tenant: "globex", tenantId: "c".repeat(32) }); // id 5, another name
    const scoped = async (id: string, createMs: number) =>
      (await audit.query({ pageSize: 10, tenant: "acme", tenantScope: { id, createMs } })).events.map((e) => Number(e.id));
    expect(await scoped("c".repeat(32), Date.parse("2025-03-10T09:00:00Z"))).toEqual([3, 2]);
    // A tenant created before ids existed has none: its events are those without an id since its creation.
    expect(await scoped("", Date.parse("2025-03-10T07:00:00Z"))).toEqual([2, 1]);
    expect((await audit.query({ pageSize: 10, tenant: "acme" })).events.map((e) => Number(e.id))).toEqual([4, 3, 2, 1]);
  });
});
