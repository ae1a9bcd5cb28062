import { describe, expect, it } from "vitest";
import { FerryError } from "../../core/errors.js";
import {
  createAuditQueryGate,
  MAX_AUDIT_QUERIES_IN_FLIGHT,
  MAX_AUDIT_QUERIES_PER_TOKEN,
  MAX_AUDIT_QUERIES_WAITING,
  MAX_AUDIT_QUERIES_WAITING_PER_TOKEN,
} from "../../services/admin/audit-query-gate.js";
import { createPeerFaults } from "../../services/limits/peer-faults.js";
import { quietLog } from "../helpers/in-process.js";

describe("the audit query gate", () => {
  it("gives each token its quota a minute, refilled evenly, and says when to come back", async () => {
    let t = 0;
    const faults = createPeerFaults(quietLog);
    const gate = createAuditQueryGate({ perMinute: 6, faults, now: () => t });
    const ask = (token: string) => gate.run(token, async () => "ok");
    for (let i = 0; i < 6; i++) await expect(ask("a")).resolves.toBe("ok");
    const refused = await ask("a").catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(FerryError);
    expect(refused).toMatchObject({ kind: "resource_exhausted", code: "audit_rate_limited", extra: { retryAfterSeconds: 10 } });
    await expect(ask("b")).resolves.toBe("ok"); // another token's quota
    t += 9_999;
    await expect(ask("a")).rejects.toMatchObject({ code: "audit_rate_limited" });
    t += 1;
    await expect(ask("a")).resolves.toBe("ok");
    expect(faults.limits().get("auditQueriesPerMinute")).toBe(2);
  });

  it("runs a bounded number at once, per token and per node; the rest wait their turn in a bounded line", async () => {
    const gate = createAuditQueryGate({ perMinute: 1000 });
    let runningNow = 0;
    let most = 0;
    const release: Array<() => void> = [];
    const slow = (token: string, signal?: AbortSignal) =>
      gate.run(
        token,
        () =>
          new Promise<string>((resolve) => {
            most = Math.max(most, ++runningNow);
            release.push(() => {
              runningNow--;
              resolve(token);
            });
          }),
        signal,
      );
    // One token: two run, the rest wait, and beyond the line's room it is refused at once.
    const mine = Array.from({ length: MAX_AUDIT_QUERIES_PER_TOKEN + MAX_AUDIT_QUERIES_WAITING_PER_TOKEN }, () => slow("a"));
    await expect(slow("a")).rejects.toMatchObject({ kind: "resource_exhausted", code: "audit_busy" });
    expect(release).toHaveLength(MAX_AUDIT_QUERIES_PER_TOKEN);
    // Other tokens take the node's other turns, not behind the first token's line.
    const others = Array.from({ length: MAX_AUDIT_QUERIES_IN_FLIGHT }, (_, i) => slow(`t${i}`));
    expect(release).toHaveLength(MAX_AUDIT_QUERIES_IN_FLIGHT);
    // A waiting call whose client goes away gives up its place.
    const gone = new AbortController();
    const abandoned = slow("z", gone.signal);
    gone.abort();
    await expect(abandoned).rejects.toMatchObject({ code: "cancelled" });
    // Everyone gets a turn, never more than the bound at once.
    while (release.length > 0) {
      release.shift()!();
      await new Promise((r) => setImmediate(r));
    }
    expect(await Promise.all([...mine, ...others])).toHaveLength(mine.length + others.length);
    expect(most).toBe(MAX_AUDIT_QUERIES_IN_FLIGHT);
    expect(MAX_AUDIT_QUERIES_WAITING).toBeGreaterThanOrEqual(MAX_AUDIT_QUERIES_WAITING_PER_TOKEN);
  });
});
