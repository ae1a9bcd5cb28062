import { copyFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { createPeerFaults } from "../../services/limits/peer-faults.js";
import { createRelay } from "../../services/relay/relay.js";
import { Catalog } from "../../services/state/catalog.js";
import { openFileStore } from "../../services/state/file-store.js";
import { request } from "../helpers/http.js";
import { quietLog, startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { ADMIN_TOKEN, tempDir } from "../helpers/processes.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";

// Finding 5 on a single node: a state.json whose records do not decode, or
// decode into something no admin call could have written, must not throw into
// the gateway, the tunnel endpoint or the admin API. Each such record is
// skipped (as if absent), counted once as a "store" fault, and logged.
const HOSTILE: Record<string, unknown> = {
  "tenant.types": { name: "types", maxConcurrentExchanges: "lots" },
  "tenant.liar": { name: "good", createTime: "2025-01-01T00:00:00Z" },
  "tenant.huge": { name: "huge", maxConcurrentExchanges: 5_000_000 },
  "tenant.slow": { name: "slow", requestTimeout: "86400s" },
  "tenant.listy": [1, 2, 3],
  "tenant.badid": { name: "badid", tenantId: "../../etc" },
  "tenant.serials": { name: "serials", deniedCertificateSerials: ["not hex"] },
  "key.0123456789abcdef": { keyId: "fedcba9876543210", tenant: "good", secretSha256: "AAAA" },
  "key.aaaaaaaaaaaaaaaa": { keyId: "aaaaaaaaaaaaaaaa", tenant: "Not A Label", secretSha256: Buffer.alloc(32).toString("base64") },
  "admin-token.evil": { tokenId: "evil", role: "root", secretSha256: Buffer.alloc(32).toString("base64"), createTime: "2025-01-01T00:00:00Z" },
  "admin-token.notime": { tokenId: "notime", role: "admin", secretSha256: Buffer.alloc(32).toString("base64") },
};

let dataDir: string;
let relay: TestRelay;
let target: TestTarget;
let connector: Connector;

beforeAll(async () => {
  target = await startTestTarget("app");
  // A good tenant, then hostile records written into the file beside it, as a hand edit or a bad restore would.
  dataDir = tempDir();
  const seed = await startTestRelay({ dataDir });
  await seed.admin.createTenant({ name: "good" });
  await seed.close();
  const file = join(dataDir, "state.json");
  const state = JSON.parse((await import("node:fs")).readFileSync(file, "utf8")) as { entries: Record<string, unknown> };
  writeFileSync(file, JSON.stringify({ ...state, entries: { ...state.entries, ...HOSTILE } }));
  relay = await startTestRelay({ dataDir });
  connector = await startTestConnector(relay.url, await relay.tenantWithKey("good"), { app: target.url });
});
afterAll(async () => {
  await connector?.stop();
  await relay?.close();
  await target?.close();
});

describe("a state file with hostile records", () => {
  it("serves the good tenant; the others are absent to the gateway and the admin API", async () => {
    expect((await request(`${relay.url}/relay/good/app/echo`, { method: "POST", body: "fine" })).body.toString()).toBe("fine");
    for (const name of ["types", "liar", "huge", "slow", "listy", "badid", "serials"]) {
      const res = await request(`${relay.url}/relay/${name}/app/echo`);
      expect(res.status, name).toBe(404);
      expect(JSON.parse(res.body.toString()).error.code).toBe("tenant_not_found");
      await expect(relay.admin.getTenant({ name })).rejects.toMatchObject({ rawMessage: `tenant "${name}" does not exist` });
    }
    expect((await relay.admin.listTenants({})).tenants.map((t) => t.name)).toEqual(["good"]);
    expect((await relay.admin.listKeys({ tenant: "good" })).keys).toHaveLength(1);
    expect((await relay.admin.listTokens({})).tokens.map((t) => t.tokenId)).toEqual(["bootstrap"]);
    // A hostile record is replaced by creating the tenant again.
    expect((await relay.admin.createTenant({ name: "types" })).tenant?.name).toBe("types");
  });

  it("counts each unusable record once as a store fault, however often the hot path asks", async () => {
    const copy = tempDir();
    copyFileSync(join(dataDir, "state.json"), join(copy, "state.json"));
    const faults = createPeerFaults(quietLog);
    const store = await openFileStore(copy);
    try {
      const catalog = new Catalog(store, { faults });
      for (let i = 0; i < 100; i++) expect(catalog.getTenant("huge")).toBeUndefined();
      catalog.listTenants();
      catalog.listKeys("good");
      catalog.listTokens();
      expect(catalog.checkConnectorKey("fck_0123456789abcdef_x")).toEqual({ ok: false, reason: "unknown" });
      const counted = Object.fromEntries([...faults.faults().values()].map((f) => [`${f.source}/${f.reason}`, f.count]));
      expect(counted).toEqual({
        "store/record_undecodable": 1, // listy ("types" was created again by the test above)
        "store/tenant_name_mismatch": 1, // liar
        "store/tenant_setting_out_of_range": 3, // huge, slow, serials
        "store/key_id_mismatch": 1,
        "store/tenant_id_invalid": 1,
        "store/key_tenant_invalid": 1,
        "store/token_role_invalid": 1,
        "store/token_create_time_missing": 1,
      });
    } finally {
      await store.close();
    }
  });

  it("refuses to start from a state file that is not JSON at all, saying so", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "state.json"), '{"format": "ferry-state/1", "entries": {');
    await expect(createRelay({ dataDir: dir, log: quietLog, adminToken: ADMIN_TOKEN })).rejects.toMatchObject({
      code: "bad_state_file",
      message: expect.stringMatching(/state\.json is not valid JSON/),
    });
  });
});
