import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FERRY_VERSION } from "../../core/version.js";
import { request } from "../helpers/http.js";
import {
  ADMIN_TOKEN,
  type FerryProcess,
  type LogLine,
  type RelayProcess,
  runFerry,
  startConnectorProcess,
  startRelayProcess,
  tempDir,
} from "../helpers/processes.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";

// Every admin RPC through `ferry admin NOUN VERB`, against a real relay with a
// real connector: the human output (a stable fragment) and the --json output.
// Every command's output is kept, and the last test checks that no secret was
// ever printed except by the one create/rotate command that minted it.

/** One CLI run; `shows` is the secret it minted, the only one it may print. */
interface Ran {
  args: string[];
  code: number | null;
  stdout: string;
  stderr: string;
  shows?: string;
}

const ran: Ran[] = [];
/** Every connector key and admin token the tests saw, ADMIN_TOKEN included. */
const secrets = new Set<string>([ADMIN_TOKEN]);
const cleanup: Array<() => Promise<unknown>> = [];

let relay: RelayProcess;
let target: TestTarget;
let connector: FerryProcess;
let connectorKeyId: string;

const ISO = String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`;
const KEY_ID = /^[a-z0-9]{16}$/;
// "fck_<16-char id>_" is 21 characters: the secret is what follows.
const SECRET_AT = 21;

async function cli(args: string[], env: Record<string, string> = {}): Promise<Ran> {
  const r: Ran = { args, ...(await runFerry(args, env)) };
  ran.push(r);
  return r;
}

/** The token from the environment, as the docs say (--token shows it in ps, and warns). */
function admin(...args: string[]): Promise<Ran> {
  return as(ADMIN_TOKEN, ...args);
}

function as(token: string, ...args: string[]): Promise<Ran> {
  return cli(["admin", "--relay", relay.url, ...args], { FERRY_TOKEN: token });
}

/** `admin` for a command that must succeed with --json: its parsed output. */
async function adminJson<T = Record<string, unknown>>(...args: string[]): Promise<T> {
  const r = await admin(...args, "--json");
  expect(r, `ferry admin ${args.join(" ")} --json`).toMatchObject({ code: 0, stderr: "" });
  return JSON.parse(r.stdout) as T;
}

/** Marks `r` as the create/rotate output allowed to print `secret` (once), and remembers the secret. */
function minted(r: Ran, secret: string): string {
  expect(r.stdout.split(secret).length - 1, "the secret is printed exactly once").toBe(1);
  r.shows = secret;
  secrets.add(secret);
  return secret;
}

/** The part of a secret that must never be printed (the whole of ADMIN_TOKEN; after "fck_<id>_" for minted ones). */
function secretPart(secret: string): string {
  return secret === ADMIN_TOKEN ? secret : secret.slice(SECRET_AT);
}

/** Resolves once `n` log lines of `p` match. */
async function lines(p: FerryProcess, match: (l: LogLine) => boolean, n: number, what: string): Promise<void> {
  await p.waitFor(() => p.lines.filter(match).length >= n, `${n}x ${what}`);
}

const tunnelEnded = (l: LogLine) => l.msg === "tunnel failed" || l.msg === "tunnel closed by the relay";

interface TenantJson {
  name: string;
  createTime?: string;
  updateTime?: string;
  displayName?: string;
  description?: string;
  disabled?: boolean;
  requestTimeout?: string;
  maxRequestBodyBytes?: string;
  maxConcurrentExchanges?: number;
  allowedTargets?: string[];
}
interface KeyJson {
  tenant: string;
  keyId: string;
  description?: string;
  createTime?: string;
  revokeTime?: string;
  expireTime?: string;
  replacedBy?: string;
}
interface TrafficJson {
  requests?: string;
  bytesIn?: string;
  bytesOut?: string;
}
interface StatsEntryJson {
  tenant: string;
  target?: string;
  recent?: TrafficJson;
  total?: TrafficJson;
  recentWindow?: string;
}
interface AuditEventJson {
  id: string;
  time: string;
  action: string;
  actor: string;
  tenant?: string;
  details?: Record<string, unknown>;
}
interface TokenJson {
  tokenId: string;
  role: string;
  description?: string;
  createTime?: string;
  revokeTime?: string;
}

/** Connector site-a's live tunnels, as `connectors list` reports them. */
async function liveTunnels(): Promise<number> {
  const { connectors } = await adminJson<{ connectors: Array<{ connectorId: string; tunnels?: number }> }>("connectors", "list", "acme");
  return connectors.find((c) => c.connectorId === "site-a")?.tunnels ?? 0;
}

/** Waits (polling the admin API, one call at a time) until site-a has both its tunnels again. */
async function bothTunnelsBack(): Promise<void> {
  while ((await liveTunnels()) < 2);
}

beforeAll(async () => {
  target = await startTestTarget("app");
  cleanup.push(() => target.close());
  relay = await startRelayProcess();
  cleanup.push(() => relay.stop());

  // Tenant acme may reach "app" only; its connector serves "app" and "web".
  expect((await admin("tenants", "create", "acme", "--allow-target", "app")).code).toBe(0);
  const created = await admin("keys", "create", "acme", "--json", "--description", "site A");
  const key = JSON.parse(created.stdout) as { keyId: string; secret: string };
  connectorKeyId = key.keyId;
  minted(created, key.secret);
  connector = startConnectorProcess(relay.url, key.secret, { app: target.url, web: target.url }, { args: ["--id", "site-a"] });
  cleanup.push(() => connector.stop("SIGKILL"));
  await connector.waitForCount("tunnel connected", 2);
});

afterAll(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

describe("ferry admin tenants", () => {
  it("create takes every settings flag; --json and `get` show them", async () => {
    const r = await admin(
      "tenants", "create", "tset",
      "--display-name", "T Set",
      "--description", "ops note",
      "--max-concurrent", "7",
      "--max-body", "10MB",
      "--allow-target", "app",
      "--allow-target", "web",
      "--request-timeout", "5s",
      "--disable",
      "--json",
    );
    expect(r.code).toBe(0);
    const created = JSON.parse(r.stdout) as TenantJson;
    expect(created).toMatchObject({
      name: "tset",
      displayName: "T Set",
      description: "ops note",
      disabled: true,
      requestTimeout: "5s",
      maxRequestBodyBytes: "10000000",
      maxConcurrentExchanges: 7,
      allowedTargets: ["app", "web"],
    });
    expect(created.createTime).toMatch(/^\d{4}-/);

    const [human, got] = await Promise.all([admin("tenants", "get", "tset"), adminJson("tenants", "get", "tset")]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^NAME\s+tset$/m);
    expect(human.stdout).toMatch(/^STATUS\s+disabled$/m);
    expect(human.stdout).toMatch(/^DISPLAY NAME\s+T Set$/m);
    expect(human.stdout).toMatch(/^DESCRIPTION\s+ops note$/m);
    expect(human.stdout).toMatch(/^REQUEST TIMEOUT\s+5s$/m);
    expect(human.stdout).toMatch(/^MAX BODY\s+10 MB$/m);
    expect(human.stdout).toMatch(/^MAX CONCURRENT\s+7$/m);
    expect(human.stdout).toMatch(/^ALLOWED TARGETS\s+app, web$/m);
    expect(human.stdout).toMatch(new RegExp(`^CREATED\\s+${ISO}$`, "m"));
    expect(got).toEqual(created);
  });

  it("get shows the defaults of a tenant created without settings", async () => {
    expect(await admin("tenants", "create", "tplain")).toMatchObject({ code: 0, stdout: "created tenant tplain\n" });
    const r = await admin("tenants", "get", "tplain");
    expect(r.stdout).toMatch(/^STATUS\s+enabled$/m);
    expect(r.stdout).toMatch(/^REQUEST TIMEOUT\s+relay default$/m);
    expect(r.stdout).toMatch(/^MAX BODY\s+no limit$/m);
    expect(r.stdout).toMatch(/^MAX CONCURRENT\s+no limit$/m);
    expect(r.stdout).toMatch(/^ALLOWED TARGETS\s+all$/m);
  });

  it("list shows each tenant's status and display name", async () => {
    const [human, { tenants }] = await Promise.all([admin("tenants", "list"), adminJson<{ tenants: TenantJson[] }>("tenants", "list")]);
    expect(human.stdout).toMatch(new RegExp(`^tset\\s+disabled\\s+T Set\\s+${ISO}$`, "m"));
    expect(human.stdout).toMatch(new RegExp(`^tplain\\s+enabled\\s+${ISO}$`, "m"));
    expect(tenants.find((t) => t.name === "tset")).toMatchObject({ disabled: true, displayName: "T Set", maxConcurrentExchanges: 7 });
    expect(tenants.find((t) => t.name === "tplain")?.disabled ?? false).toBe(false);
    // Ordered by name.
    const names = tenants.map((t) => t.name);
    expect(names).toEqual([...names].sort());
  });

  it("update changes only the settings whose flags are given, for each flag family", async () => {
    // --enable alone: everything else stays as created.
    let t = await adminJson<TenantJson>("tenants", "update", "tset", "--enable");
    expect(t.disabled ?? false).toBe(false);
    expect(t).toMatchObject({
      displayName: "T Set",
      description: "ops note",
      requestTimeout: "5s",
      maxRequestBodyBytes: "10000000",
      maxConcurrentExchanges: 7,
      allowedTargets: ["app", "web"],
    });

    const named = await admin("tenants", "update", "tset", "--disable", "--display-name", "Renamed", "--description", "");
    expect(named).toMatchObject({ code: 0, stdout: "updated tenant tset: display_name, description, disabled\n" });

    t = await adminJson<TenantJson>(
      "tenants", "update", "tset", "--max-concurrent", "0", "--max-body", "1KiB", "--request-timeout", "90s", "--allow-target", "only",
    );
    expect(t).toMatchObject({ name: "tset", displayName: "Renamed", disabled: true, maxRequestBodyBytes: "1024", requestTimeout: "90s", allowedTargets: ["only"] });
    expect(t.description ?? "").toBe("");
    expect(t.maxConcurrentExchanges ?? 0).toBe(0);
    const limits = await admin("tenants", "get", "tset");
    expect(limits.stdout).toMatch(/^STATUS\s+disabled$/m);
    expect(limits.stdout).toMatch(/^DISPLAY NAME\s+Renamed$/m);
    expect(limits.stdout).toMatch(/^MAX CONCURRENT\s+no limit$/m);
    expect(limits.stdout).toMatch(/^MAX BODY\s+1 kB$/m);
    expect(limits.stdout).toMatch(/^REQUEST TIMEOUT\s+1\.5m$/m);
    expect(limits.stdout).toMatch(/^ALLOWED TARGETS\s+only$/m);

    const reset = await admin("tenants", "update", "tset", "--request-timeout", "default", "--allow-all-targets");
    expect(reset).toMatchObject({ code: 0, stdout: "updated tenant tset: request_timeout, allowed_targets\n" });
    const [human, after] = await Promise.all([admin("tenants", "get", "tset"), adminJson<TenantJson>("tenants", "get", "tset")]);
    expect(human.stdout).toMatch(/^REQUEST TIMEOUT\s+relay default$/m);
    expect(human.stdout).toMatch(/^ALLOWED TARGETS\s+all$/m);
    expect(after.requestTimeout).toBeUndefined();
    expect(after.allowedTargets ?? []).toEqual([]);
    // Nothing else moved.
    expect(after).toMatchObject({ name: "tset", displayName: "Renamed", disabled: true, maxRequestBodyBytes: "1024" });
  });

  it("update refuses no flags and contradictory flags (exit 1) and leaves the tenant as it was", async () => {
    const before = await adminJson<TenantJson>("tenants", "get", "tset");
    const [none, enableDisable, allowBoth, badSize, tooLong, unknown] = await Promise.all([
      admin("tenants", "update", "tset"),
      admin("tenants", "update", "tset", "--enable", "--disable"),
      admin("tenants", "update", "tset", "--allow-target", "app", "--allow-all-targets"),
      admin("tenants", "update", "tset", "--max-body", "lots"),
      admin("tenants", "update", "tset", "--request-timeout", "2h"),
      admin("tenants", "update", "ghost", "--enable"),
    ]);
    expect(none).toMatchObject({ code: 1, stdout: "", stderr: "ferry: nothing to change: give at least one setting flag (see --help)\n" });
    expect(enableDisable).toMatchObject({ code: 1, stdout: "", stderr: "ferry: --disable and --enable contradict each other\n" });
    expect(allowBoth).toMatchObject({ code: 1, stdout: "", stderr: "ferry: --allow-target and --allow-all-targets contradict each other\n" });
    expect(badSize).toMatchObject({ code: 1, stdout: "" });
    expect(badSize.stderr).toContain('"lots" is not a size');
    // Parsed fine locally, refused by the relay: exit 2 with its code.
    expect(tooLong).toMatchObject({ code: 2, stdout: "", stderr: "ferry: invalid_argument: request_timeout must be between 1ms and 1h\n" });
    expect(unknown).toMatchObject({ code: 2, stderr: 'ferry: not_found: tenant "ghost" does not exist\n' });
    expect(await adminJson<TenantJson>("tenants", "get", "tset")).toEqual(before);
  });

  it("update --deny-cert-serial and --allow-cert-serial edit the tenant's deny list; get shows it", async () => {
    expect((await admin("tenants", "create", "certs")).code).toBe(0);
    const denied = await admin("tenants", "update", "certs", "--deny-cert-serial", "0a:1b:2c", "--deny-cert-serial", "DEADBEEF");
    expect(denied).toMatchObject({ code: 0, stdout: "updated tenant certs: denied_certificate_serials\n" });
    expect((await admin("tenants", "get", "certs")).stdout).toMatch(/^DENIED CERT SERIALS\s+A1B2C, DEADBEEF$/m);
    // Adding one keeps the others; the same serial in another spelling is not added twice.
    let t = await adminJson<TenantJson & { deniedCertificateSerials?: string[] }>("tenants", "update", "certs", "--deny-cert-serial", "serial=0A1B2C", "--deny-cert-serial", "ff");
    expect(t.deniedCertificateSerials).toEqual(["A1B2C", "DEADBEEF", "FF"]);
    t = await adminJson("tenants", "update", "certs", "--allow-cert-serial", "de:ad:be:ef", "--description", "pki");
    expect(t).toMatchObject({ description: "pki", deniedCertificateSerials: ["A1B2C", "FF"] });
    const [bad, both] = await Promise.all([
      admin("tenants", "update", "certs", "--deny-cert-serial", "not-hex"),
      admin("tenants", "update", "certs", "--deny-cert-serial", "ff", "--allow-cert-serial", "FF"),
    ]);
    expect(bad).toMatchObject({ code: 1, stdout: "", stderr: 'ferry: --deny-cert-serial "not-hex" is not a certificate serial (hex, e.g. 0A:1B:2C or 0A1B2C)\n' });
    expect(both).toMatchObject({ code: 1, stderr: "ferry: --deny-cert-serial and --allow-cert-serial both name FF\n" });
    expect((await admin("tenants", "get", "certs")).stdout).toMatch(/^DENIED CERT SERIALS\s+A1B2C, FF$/m);
  });

  it("delete --json names the tenant, which is then gone", async () => {
    expect(await adminJson("tenants", "delete", "tplain")).toEqual({ deleted: "tplain" });
    const { tenants } = await adminJson<{ tenants: TenantJson[] }>("tenants", "list");
    expect(tenants.map((t) => t.name)).not.toContain("tplain");
    expect(tenants.map((t) => t.name)).toContain("tset");
    expect(await admin("tenants", "delete", "tplain")).toMatchObject({ code: 2, stderr: 'ferry: not_found: tenant "tplain" does not exist\n' });
  });
});

describe("ferry admin keys", () => {
  let a: string; // created with --json, later rotated with a grace period
  let b: string; // created in human form, then revoked

  it("create prints the secret once (--json: exactly tenant, keyId, secret); list shows valid and revoked keys; revoke", async () => {
    expect((await admin("tenants", "create", "vault")).code).toBe(0);
    const [json, human] = await Promise.all([
      admin("keys", "create", "vault", "--json", "--description", "site A"),
      admin("keys", "create", "vault"),
    ]);
    expect(json.code).toBe(0);
    const key = JSON.parse(json.stdout) as Record<string, string>;
    expect(Object.keys(key).sort()).toEqual(["keyId", "secret", "tenant"]);
    expect(key.tenant).toBe("vault");
    expect(key.keyId).toMatch(KEY_ID);
    expect(key.secret).toMatch(new RegExp(`^fck_${key.keyId}_[A-Za-z0-9_-]{43}$`));
    a = key.keyId!;
    minted(json, key.secret!);

    const m = /^created key ([a-z0-9]{16}) for tenant vault\n\nconnector key \(shown once, store it now\):\n\n {2}(fck_\S+)\n\n$/.exec(human.stdout);
    expect(m, human.stdout).not.toBeNull();
    b = m![1]!;
    expect(m![2]).toMatch(new RegExp(`^fck_${b}_`));
    minted(human, m![2]!);

    const revoked = await admin("keys", "revoke", "vault", b, "--json");
    expect(revoked.code).toBe(0);
    const rk = JSON.parse(revoked.stdout) as KeyJson;
    expect(rk).toMatchObject({ tenant: "vault", keyId: b });
    expect(rk.revokeTime).toMatch(/^\d{4}-/);

    const [list, { keys }, unknownKey] = await Promise.all([
      admin("keys", "list", "vault"),
      adminJson<{ keys: KeyJson[] }>("keys", "list", "vault"),
      admin("keys", "revoke", "vault", "0000000000000000"),
    ]);
    expect(list.stdout).toMatch(/^KEY ID\s+STATUS\s+CREATED\s+DESCRIPTION$/m);
    expect(list.stdout).toMatch(new RegExp(`^${a}\\s+valid\\s+${ISO}\\s+site A$`, "m"));
    expect(list.stdout).toMatch(new RegExp(`^${b}\\s+revoked ${ISO}\\s+${ISO}$`, "m"));
    expect(keys.map((k) => k.keyId).sort()).toEqual([a, b].sort());
    expect(keys.find((k) => k.keyId === a)?.revokeTime).toBeUndefined();
    expect(keys.find((k) => k.keyId === b)?.revokeTime).toBe(rk.revokeTime);

    expect(unknownKey).toMatchObject({
      code: 2,
      stderr: 'ferry: not_found: tenant "vault" has no key "0000000000000000"\n',
    });
  });

  let successor: string;

  it("rotate --grace 1h mints a successor; the old key expires in an hour", async () => {
    const started = Date.now();
    const r = await admin("keys", "rotate", "vault", a, "--grace", "1h", "--json");
    const ended = Date.now();
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { tenant: string; keyId: string; secret: string; oldKey: KeyJson };
    expect(Object.keys(out).sort()).toEqual(["keyId", "oldKey", "secret", "tenant"]);
    expect(out.tenant).toBe("vault");
    expect(out.keyId).toMatch(KEY_ID);
    expect(out.keyId).not.toBe(a);
    expect(out.secret).toMatch(new RegExp(`^fck_${out.keyId}_[A-Za-z0-9_-]{43}$`));
    minted(r, out.secret);
    successor = out.keyId;
    expect(out.oldKey).toMatchObject({ tenant: "vault", keyId: a, replacedBy: out.keyId });
    expect(out.oldKey.revokeTime).toBeUndefined();
    const expires = Date.parse(out.oldKey.expireTime!);
    expect(expires).toBeGreaterThanOrEqual(started + 3_600_000 - 1000);
    expect(expires).toBeLessThanOrEqual(ended + 3_600_000 + 1000);

    const list = await admin("keys", "list", "vault");
    const expireIso = new Date(expires).toISOString().replace(/\.\d+Z$/, "Z");
    expect(list.stdout).toMatch(new RegExp(`^${a}\\s+expires ${expireIso}\\s+${ISO}\\s+site A$`, "m"));
    // The successor keeps the old key's description.
    expect(list.stdout).toMatch(new RegExp(`^${successor}\\s+valid\\s+${ISO}\\s+site A$`, "m"));
  });

  it("rotate --grace 0 revokes the old key at once", async () => {
    const r = await admin("keys", "rotate", "vault", successor, "--grace", "0", "--description", "site B");
    expect(r.code).toBe(0);
    const m = new RegExp(
      `^created key ([a-z0-9]{16}); old key ${successor} is revoked\\n\\nnew connector key \\(shown once, store it now\\):\\n\\n {2}(fck_\\S+)\\n\\n$`,
    ).exec(r.stdout);
    expect(m, r.stdout).not.toBeNull();
    const next = m![1]!;
    expect(m![2]).toMatch(new RegExp(`^fck_${next}_`));
    minted(r, m![2]!);

    const [{ keys }, human, again] = await Promise.all([
      adminJson<{ keys: KeyJson[] }>("keys", "list", "vault"),
      admin("keys", "list", "vault"),
      admin("keys", "rotate", "vault", successor, "--grace", "1h"),
    ]);
    const old = keys.find((k) => k.keyId === successor)!;
    expect(old.revokeTime).toMatch(/^\d{4}-/);
    expect(old.expireTime).toBeUndefined();
    expect(old.replacedBy).toBe(next);
    expect(keys.find((k) => k.keyId === next)).toMatchObject({ description: "site B" });
    expect(keys.find((k) => k.keyId === next)?.revokeTime).toBeUndefined();
    expect(human.stdout).toMatch(new RegExp(`^${successor}\\s+revoked ${ISO}`, "m"));
    // A revoked key has nothing left to rotate.
    expect(again).toMatchObject({ code: 2, stdout: "", stderr: `ferry: failed_precondition: key "${successor}" is already revoked or expired\n` });
  });
});

describe("ferry admin connectors, targets, stats and nodes (a live connector)", () => {
  it("connectors list shows the connector, its two tunnels and its targets", async () => {
    const [human, { connectors }, none] = await Promise.all([
      admin("connectors", "list", "acme"),
      adminJson<{ connectors: Array<Record<string, unknown>> }>("connectors", "list", "acme"),
      adminJson("connectors", "list", "vault"),
    ]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^CONNECTOR\s+HOST\s+VERSION\s+TUNNELS\s+IN FLIGHT\s+RTT\s+STATE\s+UNTIL\s+TARGETS\s+SINCE$/m);
    expect(human.stdout).toMatch(new RegExp(`^site-a\\s+\\S+\\s+${FERRY_VERSION.replaceAll(".", "\\.")}\\s+2\\s+0\\s+\\S+\\s+open\\s+-\\s+app,web\\s+${ISO}$`, "m"));

    expect(connectors).toHaveLength(1);
    expect(connectors[0]).toMatchObject({
      tenant: "acme",
      connectorId: "site-a",
      version: FERRY_VERSION,
      keyId: connectorKeyId,
      targets: ["app", "web"],
      tunnels: 2,
      nodeIds: [String(relay.lines.find((l) => l.msg === "relay listening")!.node)],
    });

    // Another tenant has none.
    expect(none).toEqual({ connectors: [] });
  });

  it("targets list shows each target's connectors and tunnels, and whether the tenant allows it", async () => {
    type Targets = { targets: Array<{ name: string; connectors: number; tunnels: number; allowed?: boolean }> };
    const [human, { targets }] = await Promise.all([admin("targets", "list", "acme"), adminJson<Targets>("targets", "list", "acme")]);
    expect(human.stdout).toMatch(/^TARGET\s+CONNECTORS\s+TUNNELS\s+ALLOWED$/m);
    expect(human.stdout).toMatch(/^app\s+1\s+2\s+yes$/m);
    expect(human.stdout).toMatch(/^web\s+1\s+2\s+no$/m);
    expect(targets.map((t) => [t.name, t.connectors, t.tunnels, t.allowed ?? false])).toEqual([
      ["app", 1, 2, true],
      ["web", 1, 2, false],
    ]);

    // "allowed" follows the tenant's settings.
    expect((await admin("tenants", "update", "acme", "--allow-all-targets")).code).toBe(0);
    expect((await admin("targets", "list", "acme")).stdout).toMatch(/^web\s+1\s+2\s+yes$/m);
  });

  it("stats get counts the requests relayed, per target and for the tenant, with --target for one", async () => {
    const sent = 3;
    const isApp = (l: LogLine) => l.msg === "exchange" && l.tenant === "acme" && l.target === "app";
    const before = relay.lines.filter(isApp).length;
    for (let i = 0; i < sent; i++) {
      const res = await request(`${relay.url}/relay/acme/app/echo`, { method: "POST", body: `hello ${i}` });
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe(`hello ${i}`);
    }
    // The relay logs each exchange as it records its statistics.
    await lines(relay, isApp, before + sent, "app exchanges");

    type Stats = { entries: StatsEntryJson[] };
    const [{ entries }, human, one, oneHuman, bad] = await Promise.all([
      adminJson<Stats>("stats", "get", "acme"),
      admin("stats", "get", "acme"),
      adminJson<Stats>("stats", "get", "acme", "--target", "app"),
      admin("stats", "get", "acme", "--target", "app"),
      admin("stats", "get", "acme", "--target", "Not_A_Label"),
    ]);
    const all = entries.find((e) => (e.target ?? "") === "");
    const app = entries.find((e) => e.target === "app");
    expect(all?.tenant).toBe("acme");
    expect(app?.tenant).toBe("acme");
    expect(Number(all?.total?.requests ?? 0)).toBeGreaterThanOrEqual(sent);
    expect(Number(all?.recent?.requests ?? 0)).toBeGreaterThanOrEqual(sent);
    expect(Number(app?.total?.requests ?? 0)).toBeGreaterThanOrEqual(sent);
    expect(Number(app?.total?.bytesIn ?? 0)).toBeGreaterThanOrEqual(sent * "hello 0".length);
    expect(Number(app?.total?.bytesOut ?? 0)).toBeGreaterThanOrEqual(sent * "hello 0".length);
    expect(app?.recentWindow).toBe("300s");
    // The tenant total comes first.
    expect(entries[0]).toBe(all);

    expect(human.stdout).toMatch(/^TARGET\s+PERIOD\s+REQUESTS\s+4XX\s+5XX\s+RELAY ERR\s+IN\s+OUT\s+P50\s+P95\s+P99$/m);
    const count = (re: RegExp) => Number(re.exec(human.stdout)?.[1] ?? -1);
    expect(count(/^\(all\)\s+last 5m\s+(\d+)\s/m)).toBeGreaterThanOrEqual(sent);
    expect(count(/^\(all\)\s+since start\s+(\d+)\s/m)).toBeGreaterThanOrEqual(sent);
    expect(count(/^app\s+last 5m\s+(\d+)\s/m)).toBeGreaterThanOrEqual(sent);
    expect(count(/^app\s+since start\s+(\d+)\s/m)).toBeGreaterThanOrEqual(sent);

    expect(one.entries).toHaveLength(1);
    expect(one.entries[0]).toMatchObject({ tenant: "acme", target: "app" });
    expect(Number(one.entries[0]!.total?.requests ?? 0)).toBeGreaterThanOrEqual(sent);
    expect(oneHuman.stdout).toMatch(/^app\s+since start\s+\d+\s/m);
    expect(oneHuman.stdout).not.toContain("(all)");

    expect(bad).toMatchObject({ code: 2, stdout: "" });
    expect(bad.stderr).toMatch(/^ferry: invalid_argument: .*Not_A_Label/);
  });

  it("nodes list shows the one node, serving, at the relay's address", async () => {
    const nodeId = String(relay.lines.find((l) => l.msg === "relay listening")!.node);
    const [human, { nodes }] = await Promise.all([
      admin("nodes", "list"),
      adminJson<{ nodes: Array<Record<string, unknown>> }>("nodes", "list"),
    ]);
    expect(human.stdout).toMatch(/^NODE\s+VERSION\s+ADDRESS\s+TUNNELS\s+IN FLIGHT\s+STATE\s+STARTED$/m);
    expect(human.stdout.trimEnd().split("\n")).toHaveLength(2);
    expect(human.stdout).toMatch(
      new RegExp(`^${nodeId}\\s+${FERRY_VERSION.replaceAll(".", "\\.")}\\s+${relay.url.replaceAll(".", "\\.")}\\s+2\\s+0\\s+serving\\s+${ISO}$`, "m"),
    );
    expect(nodes).toHaveLength(1);
    expect(nodes[0]).toMatchObject({ nodeId, version: FERRY_VERSION, address: relay.url, tunnels: 2 });
    expect(nodes[0]!.draining ?? false).toBe(false);
    expect(Date.parse(String(nodes[0]!.startTime))).toBeLessThanOrEqual(Date.now());
  });

  it("connectors disconnect closes the connector's tunnels; it reconnects", async () => {
    const ended = connector.lines.filter(tunnelEnded).length;
    const connected = connector.lines.filter((l) => l.msg === "tunnel connected").length;
    expect(await adminJson("connectors", "disconnect", "acme", "site-a", "--reason", "maintenance")).toEqual({ tunnels: 2 });
    await lines(connector, tunnelEnded, ended + 2, "tunnel ended");
    await connector.waitForCount("tunnel connected", connected + 2);
    await bothTunnelsBack();

    const { events } = await adminJson<{ events: AuditEventJson[] }>("audit", "list", "--action", "connector.kick", "--tenant", "acme", "--limit", "1");
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ actor: "admin:bootstrap", details: { connectorId: "site-a", reason: "maintenance", tunnels: 2 } });

    expect(await admin("connectors", "disconnect", "acme", "site-a")).toMatchObject({
      code: 0,
      stdout: "closed 2 tunnel(s) of connector site-a\n",
    });
    await connector.waitForCount("tunnel connected", connected + 4);
    await bothTunnelsBack();
  });

  it("connectors disconnect of an unknown connector is not_found (exit 2)", async () => {
    expect(await admin("connectors", "disconnect", "acme", "ghost", "--json")).toMatchObject({
      code: 2,
      stdout: "",
      stderr: 'ferry: not_found: tenant "acme" has no connector "ghost" online\n',
    });
    expect(await liveTunnels()).toBe(2);
  });

  // grpc-message is percent-encoded only where the gRPC spec says, so ':' survives the trip.
  it("connectors disconnect --reason reaches the connector's log as written", async () => {
    await bothTunnelsBack();
    const ended = connector.lines.filter(tunnelEnded).length;
    expect(await adminJson("connectors", "disconnect", "acme", "site-a", "--reason", "maintenance: window")).toEqual({ tunnels: 2 });
    await lines(connector, tunnelEnded, ended + 2, "tunnel ended");
    const reasons = connector.lines.filter(tunnelEnded).slice(ended).map((l) => l.err);
    expect(reasons).toEqual([
      "disconnected by an administrator: maintenance: window",
      "disconnected by an administrator: maintenance: window",
    ]);
  });
});

describe("ferry admin audit", () => {
  it("list filters by action prefix, tenant, actor, time and limit, newest first", async () => {
    expect((await admin("tenants", "create", "audited")).code).toBe(0);
    const createdKey = await admin("keys", "create", "audited", "--json");
    const { keyId, secret } = JSON.parse(createdKey.stdout) as { keyId: string; secret: string };
    minted(createdKey, secret);
    const rotation = await admin("keys", "rotate", "audited", keyId, "--grace", "0", "--json");
    const rotated = JSON.parse(rotation.stdout) as { keyId: string; secret: string };
    minted(rotation, rotated.secret);
    expect((await admin("keys", "revoke", "audited", rotated.keyId)).code).toBe(0);

    type Events = { events: AuditEventJson[] };
    const since = Date.now() - 3_600_000;
    const [keyEvents, tenantEvents, three, lastHour, future, byActor, human] = await Promise.all([
      adminJson<Events>("audit", "list", "--action", "key.", "--tenant", "audited"),
      adminJson<Events>("audit", "list", "--tenant", "audited"),
      adminJson<Events>("audit", "list", "--limit", "3"),
      adminJson<Events>("audit", "list", "--since", "1h"),
      adminJson<Events>("audit", "list", "--since", "2099-01-01T00:00:00Z"),
      adminJson<Events>("audit", "list", "--actor", "connector:" + connectorKeyId, "--action", "connector."),
      admin("audit", "list", "--action", "tenant.create", "--tenant", "audited"),
    ]);

    expect(keyEvents.events.map((e) => e.action)).toEqual(["key.revoke", "key.rotate", "key.create"]);
    expect(keyEvents.events.every((e) => e.tenant === "audited" && e.actor === "admin:bootstrap")).toBe(true);
    expect(keyEvents.events[0]!.details).toEqual({ keyId: rotated.keyId });
    expect(keyEvents.events[1]!.details).toEqual({ keyId, newKeyId: rotated.keyId, graceMs: 0 });

    expect(tenantEvents.events.length).toBeGreaterThanOrEqual(4);
    expect(tenantEvents.events.every((e) => e.tenant === "audited")).toBe(true);
    expect(tenantEvents.events.map((e) => e.action).filter((a) => a !== "admin.read")).toEqual([
      "key.revoke",
      "key.rotate",
      "key.create",
      "tenant.create",
    ]);

    expect(three.events).toHaveLength(3);
    const ids = three.events.map((e) => BigInt(e.id));
    expect(ids[0]! > ids[1]! && ids[1]! > ids[2]!).toBe(true);

    expect(lastHour.events.length).toBeGreaterThan(10);
    expect(lastHour.events.every((e) => Date.parse(e.time) >= since - 5000)).toBe(true);
    expect(future).toEqual({ events: [] });

    // The live connector's own events: its tunnels connecting and ending.
    expect(byActor.events.length).toBeGreaterThanOrEqual(2);
    expect(byActor.events.every((e) => e.actor === `connector:${connectorKeyId}` && e.action.startsWith("connector."))).toBe(true);
    expect(byActor.events.map((e) => e.action)).toContain("connector.connect");

    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^TIME\s+ACTION\s+ACTOR\s+TENANT\s+DETAILS$/m);
    expect(human.stdout).toMatch(new RegExp(`^${ISO}\\s+tenant\\.create\\s+admin:bootstrap\\s+audited\\s+\\{\\}$`, "m"));
    expect(human.stdout.trimEnd().split("\n")).toHaveLength(2);
  });

  it("list refuses a bad --since or --limit (exit 1) and an empty time range (exit 2)", async () => {
    const [word, badDate, zero, range] = await Promise.all([
      admin("audit", "list", "--since", "yesterday"),
      admin("audit", "list", "--since", "2026-13-45"),
      admin("audit", "list", "--limit", "0"),
      admin("audit", "list", "--since", "1h", "--until", "2h"),
    ]);
    expect(word).toMatchObject({ code: 1, stdout: "", stderr: 'ferry: "yesterday" is not a duration (examples: 500ms, 30s, 5m, 2h)\n' });
    expect(badDate).toMatchObject({ code: 1, stdout: "", stderr: 'ferry: --since "2026-13-45" is not a time (ISO 8601) or a duration\n' });
    expect(zero).toMatchObject({ code: 1, stdout: "", stderr: 'ferry: --limit "0" is not a whole number >= 1\n' });
    expect(range).toMatchObject({ code: 2, stdout: "", stderr: "ferry: invalid_argument: start_time must be before end_time\n" });
  });
});

describe("ferry admin tokens", () => {
  let viewer: { tokenId: string; secret: string };

  it("create --role viewer and --role tenant:NAME print the secret once; list shows roles, never secrets", async () => {
    expect((await admin("tenants", "create", "tok")).code).toBe(0);
    const [json, human] = await Promise.all([
      admin("tokens", "create", "--role", "viewer", "--description", "dashboards", "--json"),
      admin("tokens", "create", "--role", "tenant:tok"),
    ]);
    expect(json.code).toBe(0);
    const v = JSON.parse(json.stdout) as { tokenId: string; role: string; secret: string };
    expect(Object.keys(v).sort()).toEqual(["role", "secret", "tokenId"]);
    expect(v.role).toBe("viewer");
    expect(v.tokenId).toMatch(KEY_ID);
    expect(v.secret).toMatch(new RegExp(`^fat_${v.tokenId}_[A-Za-z0-9_-]{43}$`));
    viewer = { tokenId: v.tokenId, secret: minted(json, v.secret) };

    const m = /^created tenant:tok token ([a-z0-9]{16})\n\nadmin token \(shown once, store it now\):\n\n {2}(fat_\S+)\n\n$/.exec(human.stdout);
    expect(m, human.stdout).not.toBeNull();
    const tenantToken = minted(human, m![2]!);
    expect(tenantToken).toMatch(new RegExp(`^fat_${m![1]}_`));

    const [list, { tokens }] = await Promise.all([
      admin("tokens", "list"),
      adminJson<{ tokens: Array<TokenJson & Record<string, unknown>> }>("tokens", "list"),
    ]);
    expect(list.stdout).toMatch(new RegExp(`^TOKEN ID\\s+ROLE\\s+STATUS\\s+CREATED\\s+DESCRIPTION$`, "m"));
    expect(list.stdout).toMatch(new RegExp(`^bootstrap\\s+admin\\s+valid\\s+${ISO}\\s+bootstrap token from FERRY_ADMIN_TOKEN$`, "m"));
    expect(list.stdout).toMatch(new RegExp(`^${v.tokenId}\\s+viewer\\s+valid\\s+${ISO}\\s+dashboards$`, "m"));
    expect(list.stdout).toMatch(new RegExp(`^${m![1]}\\s+tenant:tok\\s+valid\\s+${ISO}$`, "m"));
    expect(tokens.find((t) => t.tokenId === v.tokenId)).toMatchObject({ role: "viewer", description: "dashboards" });
    expect(tokens.find((t) => t.tokenId === m![1])).toMatchObject({ role: "tenant:tok" });
    for (const t of tokens) expect(Object.keys(t).sort()).toEqual(expect.arrayContaining(["createTime", "role", "tokenId"]));
    expect(tokens.flatMap(Object.keys).filter((k) => /secret|sha/i.test(k))).toEqual([]);

    // What each role may do.
    const [viewerWrite, viewerRead, tenantList, tenantOther] = await Promise.all([
      as(viewer.secret, "tenants", "create", "by-viewer"),
      as(viewer.secret, "tenants", "list", "--json"),
      as(tenantToken, "tenants", "list", "--json"),
      as(tenantToken, "keys", "list", "acme"),
    ]);
    expect(viewerWrite).toMatchObject({ code: 2, stdout: "", stderr: "ferry: permission_denied: viewer tokens are read only\n" });
    expect(viewerRead.code).toBe(0);
    expect((JSON.parse(viewerRead.stdout) as { tenants: TenantJson[] }).tenants.map((t) => t.name)).toContain("acme");
    expect((JSON.parse(tenantList.stdout) as { tenants: TenantJson[] }).tenants.map((t) => t.name)).toEqual(["tok"]);
    expect(tenantOther).toMatchObject({ code: 2, stderr: 'ferry: permission_denied: a token for tenant "tok" reaches only that tenant\n' });
  });

  it("revoke makes a token unusable at once", async () => {
    const r = await admin("tokens", "revoke", viewer.tokenId, "--json");
    expect(r.code).toBe(0);
    const t = JSON.parse(r.stdout) as TokenJson;
    expect(t).toMatchObject({ tokenId: viewer.tokenId, role: "viewer" });
    expect(t.revokeTime).toMatch(/^\d{4}-/);
    const [list, refused, unknown] = await Promise.all([
      admin("tokens", "list"),
      as(viewer.secret, "nodes", "list"),
      admin("tokens", "revoke", "0000000000000000"),
    ]);
    expect(list.stdout).toMatch(new RegExp(`^${viewer.tokenId}\\s+viewer\\s+revoked ${ISO}\\s+${ISO}\\s+dashboards$`, "m"));
    expect(refused).toMatchObject({ code: 2, stdout: "", stderr: "ferry: unauthenticated: admin token is not valid\n" });
    expect(unknown).toMatchObject({
      code: 2,
      stderr: 'ferry: not_found: there is no admin token "0000000000000000"\n',
    });
  });

  it("create needs --role (exit 1) and a valid one (exit 2)", async () => {
    const [missing, bogus] = await Promise.all([
      admin("tokens", "create", "--json"),
      admin("tokens", "create", "--role", "root"),
    ]);
    expect(missing).toMatchObject({ code: 1, stdout: "", stderr: "ferry: --role is required: admin, viewer or tenant:<name>\n" });
    expect(bogus).toMatchObject({ code: 2, stdout: "", stderr: 'ferry: invalid_argument: role "root" is not "admin", "viewer" or "tenant:<name>"\n' });
  });

  it("the last valid admin token cannot be revoked (exit 2 failed_precondition)", async () => {
    const created = await admin("tokens", "create", "--role", "admin", "--json");
    const second = JSON.parse(created.stdout) as { tokenId: string; role: string; secret: string };
    expect(second.role).toBe("admin");
    minted(created, second.secret);
    // With two admin tokens, one may go...
    expect(await admin("tokens", "revoke", second.tokenId)).toMatchObject({ code: 0, stdout: `revoked token ${second.tokenId}\n` });
    // ...but not the last one: the bootstrap token, which these tests keep using.
    expect(await admin("tokens", "revoke", "bootstrap")).toMatchObject({
      code: 2,
      stdout: "",
      stderr: "ferry: failed_precondition: this is the last admin token; create another before revoking it\n",
    });
    const { tokens } = await adminJson<{ tokens: TokenJson[] }>("tokens", "list");
    expect(tokens.find((t) => t.tokenId === "bootstrap")?.revokeTime).toBeUndefined();
  });
});

describe("ferry admin global options", () => {
  async function deadRelay(): Promise<string> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return `http://127.0.0.1:${port}`;
  }

  it("takes --relay and --token from FERRY_RELAY and FERRY_TOKEN; flags win over them", async () => {
    const dead = await deadRelay();
    const file = join(tempDir(), "admin.token");
    writeFileSync(file, `${ADMIN_TOKEN}\n`, { mode: 0o600 });
    const [fromEnv, flagsWin, fromFile] = await Promise.all([
      cli(["admin", "nodes", "list", "--json"], { FERRY_RELAY: relay.url, FERRY_TOKEN: ADMIN_TOKEN, FERRY_ADMIN_TOKEN: "" }),
      cli(["admin", "--relay", relay.url, "--token", ADMIN_TOKEN, "nodes", "list", "--json"], {
        FERRY_RELAY: dead,
        FERRY_TOKEN: "not-the-token-0123456789",
      }),
      cli(["admin", "--relay", relay.url, "--token-file", file, "nodes", "list", "--json"], { FERRY_TOKEN: "not-the-token-0123456789" }),
    ]);
    for (const r of [fromEnv, flagsWin, fromFile]) {
      expect(r.code).toBe(0);
      expect((JSON.parse(r.stdout) as { nodes: Array<{ address: string }> }).nodes[0]?.address).toBe(relay.url);
    }
    expect(fromEnv.stderr).toBe("");
    expect(fromFile.stderr).toBe("");
  });

  it("--token still works, but warns that the process list shows it and names the alternatives", async () => {
    const r = await cli(["admin", "--relay", relay.url, "--token", ADMIN_TOKEN, "nodes", "list", "--json"], { FERRY_TOKEN: "" });
    expect(r.code).toBe(0);
    expect(r.stderr).toBe(
      "warning: --token puts the secret in the process list, where every local user can read it; use FERRY_TOKEN or --token-file instead\n",
    );
    const both = await cli(["admin", "--relay", relay.url, "--token", ADMIN_TOKEN, "--token-file", "/nonexistent", "nodes", "list"]);
    expect(both).toMatchObject({ code: 1, stdout: "" });
    expect(both.stderr).toMatch(/ferry: --token and --token-file contradict each other: give one\n$/);
    const missing = await cli(["admin", "--relay", relay.url, "--token-file", "/nonexistent/admin.token", "nodes", "list"], { FERRY_TOKEN: ADMIN_TOKEN });
    expect(missing).toMatchObject({ code: 1, stdout: "", stderr: "ferry: --token-file /nonexistent/admin.token: no such file\n" });
    const none = await cli(["admin", "--relay", relay.url, "nodes", "list"], { FERRY_TOKEN: "", FERRY_ADMIN_TOKEN: "" });
    expect(none).toMatchObject({ code: 1, stderr: "ferry: no admin token: set FERRY_TOKEN or pass --token-file FILE\n" });
  });

  it("--help's examples keep the token out of the command line", async () => {
    const r = await cli(["admin", "--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("FERRY_TOKEN=");
    expect(r.stdout).toContain("--token-file");
    expect(r.stdout.split("Examples:")[1]).not.toMatch(/--token\s/);
  });

  it("an unreachable relay is exit 2 unavailable; a relay that is not a URL is exit 1", async () => {
    const dead = await deadRelay();
    const [byFlag, byEnv, notUrl] = await Promise.all([
      cli(["admin", "--relay", dead, "tenants", "list"], { FERRY_TOKEN: ADMIN_TOKEN }),
      cli(["admin", "keys", "list", "acme", "--json"], { FERRY_RELAY: dead, FERRY_TOKEN: ADMIN_TOKEN }),
      cli(["admin", "--relay", "not a url", "nodes", "list"], { FERRY_TOKEN: ADMIN_TOKEN }),
    ]);
    for (const r of [byFlag, byEnv]) {
      expect(r.code).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toMatch(/^ferry: unavailable: .*ECONNREFUSED.*\n$/);
    }
    expect(notUrl).toMatchObject({ code: 1, stdout: "", stderr: 'ferry: --relay "not a url" is not a URL\n' });
  });
});

describe("secrets", () => {
  it("no command prints a secret, except the create or rotate command that minted it (once)", () => {
    // Guard against a vacuous pass: the tests above ran many commands and minted many secrets.
    expect(ran.length).toBeGreaterThan(60);
    expect(secrets.size).toBeGreaterThanOrEqual(11);
    expect(ran.filter((r) => r.shows).length).toBeGreaterThanOrEqual(10);
    for (const r of ran) {
      for (const secret of secrets) {
        if (secret === r.shows) continue;
        expect(`${r.stdout}\n${r.stderr}`, `ferry ${r.args.join(" ")}`).not.toContain(secretPart(secret));
      }
    }
    // Nor do the relay's and the connector's logs (audit events are mirrored there).
    const logs = JSON.stringify([relay.lines, relay.stderr, connector.lines, connector.stderr]);
    expect(relay.lines.length).toBeGreaterThan(10);
    for (const secret of secrets) expect(logs).not.toContain(secretPart(secret));
  });
});
