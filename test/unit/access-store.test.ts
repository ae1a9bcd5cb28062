import { writeFileSync } from "node:fs";
import { BlockList } from "node:net";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { type AccessPolicy, AccessPolicySchema } from "../../gen/ferry/access/v1/access_policy_pb.js";
import { FerryError } from "../../core/errors.js";
import { sha256 } from "../../services/auth/secrets.js";
import { createPeerFaults, type PeerFaults } from "../../services/limits/peer-faults.js";
import { UNUSABLE_ACCESS_POLICY } from "../../services/state/access-policies.js";
import { Catalog } from "../../services/state/catalog.js";
import { openFileStore } from "../../services/state/file-store.js";
import type { KvStore } from "../../services/state/kv-store.js";
import { quietLog } from "../helpers/in-process.js";
import { tempDir } from "../helpers/processes.js";
import { eventually } from "../helpers/wait.js";

// Access policies and client keys on a real file store (the single node's state.json), as the relay keeps them.
const open: KvStore[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});

async function catalogIn(dir = tempDir(), faults: PeerFaults = createPeerFaults(quietLog)): Promise<{ catalog: Catalog; store: KvStore; dir: string; faults: PeerFaults }> {
  const store = await openFileStore(dir);
  open.push(store);
  return { catalog: new Catalog(store, { faults }), store, dir, faults };
}

/** The state file as a relay writes it, with `entries` in it, for records only a hand or a hostile writer makes. */
function stateFile(dir: string, entries: Record<string, unknown>): void {
  writeFileSync(join(dir, "state.json"), JSON.stringify({ format: "ferry-state/1", entries }));
}

const policy = (targets: string[]): AccessPolicy => create(AccessPolicySchema, { rules: [{ targets, require: ["apiKey"] }] });
const NO_TLS = { clientCertificates: false };

async function refused(p: Promise<unknown> | (() => unknown)): Promise<FerryError> {
  const err = await (typeof p === "function" ? Promise.resolve().then(p) : p).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FerryError);
  return err as FerryError;
}

describe("access policies", () => {
  it("a tenant without a policy has none; a set policy is served as one object until it changes", async () => {
    const { catalog, store } = await catalogIn();
    await catalog.createTenant("acme");
    const policies = catalog.accessPolicies;
    expect(policies.getAccessPolicy("acme")).toBeUndefined();
    expect(policies.getAccessPolicy("nobody")).toBeUndefined();

    const first = await policies.setAccessPolicy("acme", policy(["crm"]), NO_TLS);
    expect(first.before).toBeUndefined();
    // Stored normalized (validateAccessPolicy): the rule got its default name.
    expect(first.after.policy!.rules[0]!.name).toBe("rule 1");
    const served = policies.getAccessPolicy("acme")!;
    expect(served.rules[0]!.targets).toEqual(["crm"]);
    expect(policies.getAccessPolicy("acme")).toBe(served);
    expect(policies.policyUnusable("acme")).toBe(false);

    const second = await policies.setAccessPolicy("acme", policy(["erp"]), NO_TLS);
    expect(second.before!.policy!.rules[0]!.targets).toEqual(["crm"]);
    const next = policies.getAccessPolicy("acme")!;
    expect(next).not.toBe(served);
    expect(next.rules[0]!.targets).toEqual(["erp"]);
    expect(policies.getAccessPolicyRecord("acme")!.updateTime).toBeDefined();

    // The empty policy removes the record: public again.
    const cleared = await policies.setAccessPolicy("acme", create(AccessPolicySchema), NO_TLS);
    expect(cleared.before!.policy!.rules).toHaveLength(1);
    expect(policies.getAccessPolicy("acme")).toBeUndefined();
    expect(policies.getAccessPolicyRecord("acme")).toBeUndefined();
    expect(store.list("access-policy.")).toEqual([]);
  });

  it("refuses an invalid policy naming the field, a tenant that does not exist, and mtls alone without TLS", async () => {
    const { catalog } = await catalogIn();
    await catalog.createTenant("acme");
    const bad = await refused(catalog.accessPolicies.setAccessPolicy("acme", policy(["Not A Label"]), NO_TLS));
    expect(bad).toMatchObject({ kind: "invalid_argument", message: expect.stringContaining("targets") });
    expect(await refused(catalog.accessPolicies.setAccessPolicy("ghost", policy(["crm"]), NO_TLS))).toMatchObject({ kind: "not_found" });
    expect(await refused(() => catalog.accessPolicies.getAccessPolicyRecord("ghost"))).toMatchObject({ kind: "not_found" });
    const mtls = create(AccessPolicySchema, { rules: [{ targets: ["*"], require: ["mtls"] }], clientCaPem: "x" });
    expect((await refused(catalog.accessPolicies.setAccessPolicy("acme", mtls, NO_TLS))).message).toMatch(/TLS|clientCaPem/);
    expect(catalog.accessPolicies.getAccessPolicy("acme")).toBeUndefined();
  });

  it("survives a restart: the policy is read back from the file", async () => {
    const dir = tempDir();
    const first = await catalogIn(dir);
    await first.catalog.createTenant("acme");
    await first.catalog.accessPolicies.setAccessPolicy("acme", policy(["crm"]), NO_TLS);
    await open.pop()!.close();
    const again = await catalogIn(dir);
    expect(again.catalog.accessPolicies.getAccessPolicy("acme")!.rules[0]).toMatchObject({ name: "rule 1", targets: ["crm"] });
  });

  it("a stored policy that fails validation is a fault and denies everything (fail closed) until it is set again", async () => {
    const dir = tempDir();
    stateFile(dir, {
      "tenant.acme": { name: "acme", tenantId: "0123456789abcdef0123456789abcdef" },
      // Written by hand (or by a node with rules this one does not know): "BAD!" is no target name.
      "access-policy.acme": { tenant: "acme", policy: { rules: [{ targets: ["BAD!"] }] } },
      "access-policy.other": "not a record",
    });
    const { catalog, faults } = await catalogIn(dir);
    const policies = catalog.accessPolicies;
    expect(policies.policyUnusable("acme")).toBe(true);
    expect(policies.getAccessPolicy("acme")).toBe(UNUSABLE_ACCESS_POLICY);
    expect(policies.policyUnusable("other")).toBe(true);
    expect([...faults.faults().values()].map((f) => f.reason).sort()).toEqual(["policy_invalid", "record_undecodable"]);
    expect(await refused(() => policies.getAccessPolicyRecord("acme"))).toMatchObject({ kind: "failed_precondition", code: "access_policy_unusable" });

    const replaced = await policies.setAccessPolicy("acme", policy(["crm"]), NO_TLS);
    expect(replaced).toMatchObject({ before: undefined, replacedUnusable: true });
    expect(policies.policyUnusable("acme")).toBe(false);
    expect(policies.getAccessPolicy("acme")!.rules[0]!.targets).toEqual(["crm"]);
  });

  it("the unusable policy refuses every client even read as a plain policy: one rule, every target, every address denied", () => {
    expect(Object.isFrozen(UNUSABLE_ACCESS_POLICY) && Object.isFrozen(UNUSABLE_ACCESS_POLICY.rules[0])).toBe(true);
    const [rule, ...more] = UNUSABLE_ACCESS_POLICY.rules;
    expect(more).toEqual([]);
    expect(rule).toMatchObject({ targets: ["*"], paths: [] });
    const denied = new BlockList();
    for (const cidr of rule!.denyIps) {
      const [net, bits] = cidr.split("/");
      denied.addSubnet(net!, Number(bits), net!.includes(":") ? "ipv6" : "ipv4");
    }
    for (const ip of ["0.0.0.0", "127.0.0.1", "203.0.113.9", "255.255.255.255"]) expect(denied.check(ip, "ipv4"), ip).toBe(true);
    for (const ip of ["::", "::1", "2001:db8::7", "ffff::1"]) expect(denied.check(ip, "ipv6"), ip).toBe(true);
  });
});

describe("client keys", () => {
  it("mints fcl_ secrets checked in memory: ok with tenant and targets, unknown, malformed, revoked", async () => {
    const { catalog } = await catalogIn();
    await catalog.createTenant("acme");
    const keys = catalog.clientKeys;
    const { record, secret } = await keys.createClientKey("acme", { description: "partner", targets: ["crm", "erp"] });
    expect(secret).toMatch(new RegExp(`^fcl_${record.keyId}_[A-Za-z0-9_-]{43}$`));
    expect(record).toMatchObject({ tenant: "acme", description: "partner", targets: ["crm", "erp"] });
    expect(record.expireTime).toBeUndefined();
    // Only the digest is stored.
    expect(Buffer.from(record.secretSha256)).toEqual(Buffer.from(sha256(secret)));
    expect(keys.checkClientKey(secret)).toEqual({ ok: true, keyId: record.keyId, tenant: "acme", targets: ["crm", "erp"] });

    const tampered = `${secret.slice(0, -2)}${secret.endsWith("AA") ? "BB" : "AA"}`;
    expect(keys.checkClientKey(tampered)).toEqual({ ok: false, reason: "unknown" });
    // The secret that verified is remembered for the record, and compared as it is: the same answers again.
    expect(keys.checkClientKey(secret)).toEqual({ ok: true, keyId: record.keyId, tenant: "acme", targets: ["crm", "erp"] });
    expect(keys.checkClientKey(tampered)).toEqual({ ok: false, reason: "unknown" });
    expect(keys.checkClientKey(secret.slice(0, -1))).toEqual({ ok: false, reason: "unknown" });
    expect(keys.checkClientKey(`fcl_0000000000000000_${secret.slice(-43)}`)).toEqual({ ok: false, reason: "unknown" });
    expect(keys.checkClientKey("Bearer nonsense")).toEqual({ ok: false, reason: "malformed" });

    // Connector keys and client keys never work as each other.
    const connector = await catalog.createKey("acme");
    expect(keys.checkClientKey(connector.secret)).toEqual({ ok: false, reason: "malformed" });
    expect(catalog.checkConnectorKey(secret)).toEqual({ ok: false, reason: "malformed" });

    const { before, after } = await keys.revokeClientKey("acme", record.keyId);
    expect(before.revokeTime).toBeUndefined();
    expect(after.revokeTime).toBeDefined();
    expect(keys.checkClientKey(secret)).toEqual({ ok: false, reason: "revoked" });
    // Revoking again changes nothing.
    expect((await keys.revokeClientKey("acme", record.keyId)).after.revokeTime).toEqual(after.revokeTime);
    expect(keys.listClientKeys("acme").map((k) => [k.keyId, k.revokeTime !== undefined])).toEqual([[record.keyId, true]]);
  });

  it("an expiring key stops working at its expire time", async () => {
    const { catalog } = await catalogIn();
    await catalog.createTenant("acme");
    const started = Date.now();
    const { record, secret } = await catalog.clientKeys.createClientKey("acme", { ttlMs: 1000 });
    const expires = Number(record.expireTime!.seconds) * 1000 + record.expireTime!.nanos / 1e6;
    expect(expires).toBeGreaterThanOrEqual(started + 1000);
    expect(expires).toBeLessThanOrEqual(Date.now() + 1000);
    expect(catalog.clientKeys.checkClientKey(secret).ok).toBe(true);
    await eventually(() => Date.now() >= expires, "the expire time");
    expect(catalog.clientKeys.checkClientKey(secret)).toEqual({ ok: false, reason: "expired" });
  });

  it("refuses bad options naming the field, and another tenant's key is not found", async () => {
    const { catalog } = await catalogIn();
    await catalog.createTenant("acme");
    await catalog.createTenant("globex");
    const keys = catalog.clientKeys;
    const cases: Array<[Parameters<typeof keys.createClientKey>[1], RegExp]> = [
      [{ targets: ["CRM!"] }, /^targets entry "CRM!" is not a DNS label/],
      [{ targets: ["crm", "crm"] }, /^targets lists "crm" twice/],
      [{ description: "x".repeat(201) }, /^description is longer than 200/],
      [{ ttlMs: 0 }, /^ttl must be between 1s and 3650d/],
      [{ ttlMs: 3651 * 86_400_000 }, /^ttl must be between/],
    ];
    for (const [opts, message] of cases) {
      expect(await refused(keys.createClientKey("acme", opts)), JSON.stringify(opts)).toMatchObject({ kind: "invalid_argument", message: expect.stringMatching(message) });
    }
    expect(await refused(keys.createClientKey("ghost"))).toMatchObject({ kind: "not_found" });
    expect(keys.listClientKeys("acme")).toEqual([]);

    const theirs = await keys.createClientKey("globex");
    expect(await refused(keys.revokeClientKey("acme", theirs.record.keyId))).toMatchObject({ kind: "not_found", code: "client_key_not_found" });
    expect(await refused(() => keys.requireClientKey("acme", theirs.record.keyId))).toMatchObject({ kind: "not_found" });
    expect(keys.checkClientKey(theirs.secret)).toMatchObject({ ok: true, tenant: "globex" });
  });
});

describe("deleting a tenant", () => {
  it("deletes its policy and client keys; a new tenant of the same name starts without them", async () => {
    const { catalog, store } = await catalogIn();
    await catalog.createTenant("acme");
    await catalog.createTenant("globex");
    await catalog.accessPolicies.setAccessPolicy("acme", policy(["crm"]), NO_TLS);
    await catalog.accessPolicies.setAccessPolicy("globex", policy(["crm"]), NO_TLS);
    const mine = await catalog.clientKeys.createClientKey("acme");
    const theirs = await catalog.clientKeys.createClientKey("globex");

    await catalog.deleteTenant("acme");
    expect(store.get("access-policy.acme")).toBeUndefined();
    expect(store.get(`client-key.${mine.record.keyId}`)).toBeUndefined();
    expect(catalog.accessPolicies.getAccessPolicy("acme")).toBeUndefined();
    expect(catalog.clientKeys.checkClientKey(mine.secret)).toEqual({ ok: false, reason: "unknown" });
    // The other tenant keeps its own.
    expect(catalog.accessPolicies.getAccessPolicy("globex")).toBeDefined();
    expect(catalog.clientKeys.checkClientKey(theirs.secret).ok).toBe(true);

    await catalog.createTenant("acme");
    expect(catalog.accessPolicies.getAccessPolicy("acme")).toBeUndefined();
    expect(catalog.clientKeys.listClientKeys("acme")).toEqual([]);
  });

  it("a tenant created where a cut-short deletion left a policy and a client key does not inherit them", async () => {
    const dir = tempDir();
    const secret = `fcl_0123456789abcdef_${"k".repeat(43)}`;
    stateFile(dir, {
      "access-policy.ghost": { tenant: "ghost", policy: { rules: [{ name: "old", targets: ["*"], allowIps: ["10.0.0.0/8"] }] } },
      "client-key.0123456789abcdef": { keyId: "0123456789abcdef", tenant: "ghost", secretSha256: Buffer.from(sha256(secret)).toString("base64") },
    });
    const { catalog, store } = await catalogIn(dir);
    // No tenant: the key does not work, whatever its record says.
    expect(catalog.clientKeys.checkClientKey(secret)).toEqual({ ok: false, reason: "unknown" });
    await catalog.createTenant("ghost");
    expect(catalog.clientKeys.checkClientKey(secret)).toEqual({ ok: false, reason: "unknown" });
    expect(catalog.accessPolicies.getAccessPolicy("ghost")).toBeUndefined();
    expect(store.list("client-key.")).toEqual([]);
  });
});
