import { spawn } from "node:child_process";
import { scryptSync } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { connect, type KV, type NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toJson } from "@bufbuild/protobuf";
import { type AuditEvent, AuditEventSchema } from "../../gen/ferry/admin/v1/admin_service_pb.js";
import { UNUSABLE_ACCESS_POLICY } from "../../services/state/access-policies.js";
import { makeTestPki, type TestPki } from "../helpers/certs.js";
import { startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { type NatsServer, startNatsServer } from "../helpers/nats-server.js";
import { ADMIN_TOKEN, CLI, ROOT, tempDir } from "../helpers/processes.js";
import { eventually } from "../helpers/wait.js";

// Client access policies and client keys through the admin API and `ferry admin access|client-keys` (the built
// CLI, in its own process) against real relays: one without TLS, one with TLS asking clients for certificates
// (mtls rules), and two cluster nodes on a real nats-server. Every CLI output is kept: the last test checks no
// client secret leaked.

interface Ran {
  args: string[];
  code: number | null;
  stdout: string;
  stderr: string;
  /** The client secret this run minted: the only one it may print. */
  shows?: string;
}
const ran: Ran[] = [];
const clientSecrets = new Set<string>();
const ISO = String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`;

/** Runs the built CLI to completion; `input` goes to its stdin (closed at once otherwise). */
function ferry(args: string[], env: Record<string, string> = {}, input = ""): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("exit", (code) => {
      const r = { args, code, stdout, stderr };
      ran.push(r);
      resolve(r);
    });
    child.stdin.end(input);
  });
}

let plain: TestRelay;
let tls: TestRelay;
let pki: TestPki;
let dir: string;

/** `ferry admin --relay <relay> ...` with the token in the environment, as the docs say. */
function admin(relay: TestRelay, args: string[], token = ADMIN_TOKEN): Promise<Ran> {
  return ferry(["admin", "--relay", relay.url, ...args], { FERRY_TOKEN: token, NODE_EXTRA_CA_CERTS: pki.ca });
}

async function adminJson<T = Record<string, unknown>>(relay: TestRelay, ...args: string[]): Promise<T> {
  const r = await admin(relay, [...args, "--json"]);
  expect(r, `ferry admin ${args.join(" ")} --json`).toMatchObject({ code: 0, stderr: "" });
  return JSON.parse(r.stdout) as T;
}

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** The example of issue 14, with this test's CA for the mtls rule. */
function examplePolicy(): string {
  const ca = readFileSync(pki.ca, "utf8").trimEnd().split("\n").map((l) => `  ${l}`).join("\n");
  return `rules:                        # in order; the first rule whose targets (and paths, if given) match applies
  - targets: [crm]
    paths: [/api/]
    allowIps: [203.0.113.0/24]
    require: [apiKey, jwt]
    jwt: {issuer: "https://login.example.com/acme", audience: "api://crm", claims: {groups: crm-users}}
    rateLimit: {requests: 100, per: 1s, burst: 200, by: client}
  - targets: ["*"]
    require: [mtls]
clientCaPem: |
${ca}
`;
}

beforeAll(async () => {
  dir = tempDir();
  pki = makeTestPki();
  [plain, tls] = await Promise.all([startTestRelay(), startTestRelay({ tlsCert: pki.cert, tlsKey: pki.key, ca: pki.ca, clientCertificates: true })]);
  for (const relay of [plain, tls]) for (const name of ["acme", "globex"]) await relay.admin.createTenant({ name });
});
afterAll(async () => {
  await Promise.all([plain, tls].map((r) => r?.close()));
});

describe("ferry admin access", () => {
  let stored: Record<string, unknown>;

  it("set --file stores the issue's example (YAML) on a relay that asks for client certificates, normalized; get --json shows it", async () => {
    const policyFile = file("policy.yaml", examplePolicy());
    const set = await admin(tls, ["access", "set", "acme", "--file", policyFile]);
    expect(set, set.stderr).toMatchObject({ code: 0, stderr: "" });
    expect(set.stdout).toMatch(new RegExp(`^# access policy of tenant acme, set ${ISO}\nrules:\n`));
    const got = await adminJson<{ policy: Record<string, unknown>; updateTime: string }>(tls, "access", "get", "acme");
    expect(got.updateTime).toMatch(/^\d{4}-/);
    expect(got.policy).toEqual({
      rules: [
        {
          name: "rule 1",
          targets: ["crm"],
          paths: ["/api/"],
          allowIps: ["203.0.113.0/24"],
          require: ["apiKey", "jwt"],
          // A single audience in the file is a list of one; defaults are written out.
          jwt: { issuer: "https://login.example.com/acme", audience: ["api://crm"], claims: { groups: "crm-users" }, clockSkew: "30s", algorithms: ["RS256", "PS256", "ES256", "EdDSA"] },
          rateLimit: { requests: 100, per: "1s", burst: 200, by: "client" },
        },
        { name: "rule 2", targets: ["*"], require: ["mtls"] },
      ],
      clientCaPem: `${readFileSync(pki.ca, "utf8").trimEnd()}\n`,
    });
    stored = got.policy;
    // The relay holds the same policy in memory for the gateway.
    expect(tls.relay.catalog.accessPolicies.getAccessPolicy("acme")!.rules.map((r) => r.name)).toEqual(["rule 1", "rule 2"]);
  });

  it("get prints YAML that set takes back unchanged", async () => {
    const human = await admin(tls, ["access", "get", "acme"]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(new RegExp(`^# access policy of tenant acme, updated ${ISO}\nrules:\n  - targets:\n      - crm\n`));
    const again = await admin(tls, ["access", "set", "acme", "--file", file("round.yaml", human.stdout)]);
    expect(again).toMatchObject({ code: 0, stderr: "" });
    expect((await adminJson<{ policy: unknown }>(tls, "access", "get", "acme")).policy).toEqual(stored);
  });

  it("the same policy on a relay that does not ask for client certificates is refused: its mtls-only rule could never match", async () => {
    const r = await admin(plain, ["access", "set", "acme", "--file", file("example.yaml", examplePolicy())]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^ferry: invalid_argument: rule 2: .*accepts only mtls can never match/);
    expect((await plain.admin.getAccessPolicy({ tenant: "acme" })).policy?.rules).toEqual([]);
  });

  it("a tenant without a policy: get says every target is public; --json holds an empty policy", async () => {
    const human = await admin(plain, ["access", "get", "globex"]);
    expect(human).toMatchObject({ code: 0, stdout: "no policy: every target is public\n", stderr: "" });
    expect(await adminJson(plain, "access", "get", "globex")).toEqual({ policy: {} });
  });

  it("bad policies are refused naming the rule and field (exit 2); bad files naming the key (exit 1); nothing changes", async () => {
    await plain.admin.setAccessPolicy({ tenant: "globex", policy: { rules: [{ targets: ["app"] }] } });
    const refusals: Array<[string, number, RegExp]> = [
      ["rules:\n  - targets: [Not A Label]\n", 2, /^ferry: invalid_argument: rule 1: targets: "Not A Label" is neither a target name/],
      ["rules:\n  - name: partners\n    targets: [crm]\n    allowIps: [300.1.2.3/8]\n", 2, /^ferry: invalid_argument: rule "partners": allowIps: "300.1.2.3\/8"/],
      ["rules:\n  - targets: [crm]\n    require: [password]\n", 2, /^ferry: invalid_argument: rule 1: require: "password" is not a credential/],
      ["rules:\n  - targets: [crm]\n    targetz: [erp]\n", 1, /^ferry: .*bad\.yaml: rules\[0\]: key "targetz" is unknown\n$/],
      ["rules: [\n", 1, /^ferry: .*bad\.yaml is not valid YAML/],
      ["- just a list\n", 1, /must hold a mapping with "rules"/],
    ];
    for (const [text, code, stderr] of refusals) {
      const r = await admin(plain, ["access", "set", "globex", "--file", file("bad.yaml", text)]);
      expect(r, text).toMatchObject({ code, stdout: "" });
      expect(r.stderr, text).toMatch(stderr);
    }
    const noFile = await admin(plain, ["access", "set", "globex"]);
    expect(noFile).toMatchObject({ code: 1, stderr: "ferry: --file is required: the policy file (YAML or JSON)\n" });
    expect((await plain.admin.getAccessPolicy({ tenant: "globex" })).policy!.rules.map((r) => r.targets)).toEqual([["app"]]);
    // The API says the same to any Connect client.
    const err = await plain.admin.setAccessPolicy({ tenant: "globex", policy: { rules: [{ targets: [] }] } }).catch((e: unknown) => ConnectError.from(e));
    expect(err).toMatchObject({ code: Code.InvalidArgument, rawMessage: expect.stringContaining("rule 1: targets: at least one") });
  });

  it("JSON files work too, and an empty policy makes every target public again", async () => {
    const json = await admin(plain, ["access", "set", "globex", "--file", file("p.json", JSON.stringify({ rules: [{ targets: ["erp"], deny_ips: ["10.0.0.0/8"] }] })), "--json"]);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ policy: { rules: [{ name: "rule 1", targets: ["erp"], denyIps: ["10.0.0.0/8"] }] }, updateTime: expect.any(String) });
    const empty = await admin(plain, ["access", "set", "globex", "--file", file("empty.yaml", "# nothing\n")]);
    expect(empty).toMatchObject({ code: 0, stdout: "removed the access policy of tenant globex: every target is public\n" });
    expect(plain.relay.catalog.accessPolicies.getAccessPolicy("globex")).toBeUndefined();
    expect((await admin(plain, ["access", "get", "globex"])).stdout).toBe("no policy: every target is public\n");
  });

  it("hash-password hashes stdin with scrypt (never argv); the hash is a basic user's passwordHash; audits show only a fingerprint", async () => {
    const password = "correct horse battery staple";
    const [one, two] = await Promise.all([
      ferry(["admin", "access", "hash-password"], {}, password),
      ferry(["admin", "access", "hash-password"], {}, `${password}\n`),
    ]);
    const form = /^scrypt\$32768\$8\$1\$([A-Za-z0-9_-]+)\$([A-Za-z0-9_-]+)\n$/;
    for (const r of [one, two]) {
      expect(r, r.stderr).toMatchObject({ code: 0, stderr: "" });
      const [, salt, hash] = form.exec(r.stdout)!;
      // The hash is of the password, with the trailing newline of `echo` dropped.
      const derived = scryptSync(password, Buffer.from(salt!, "base64url"), 32, { N: 32768, r: 8, p: 1, maxmem: 64 * 1024 * 1024 });
      expect(derived.toString("base64url")).toBe(hash);
    }
    expect(one.stdout).not.toBe(two.stdout); // salted
    expect((await ferry(["admin", "access", "hash-password"], {}, "")).stderr).toMatch(/^ferry: the password is empty/);
    const onArgv = await ferry(["admin", "access", "hash-password", password]);
    expect(onArgv.code).not.toBe(0);
    expect(onArgv.stdout).toBe("");

    const hashed = one.stdout.trim();
    const policy = (users: string) => `rules:\n  - name: devices\n    targets: [legacy]\n    require: [basic]\n    basicUsers:\n${users}`;
    const first = await admin(plain, ["access", "set", "acme", "--file", file("basic.yaml", policy(`      - {name: scanner, passwordHash: "${hashed}"}\n`))]);
    expect(first, first.stderr).toMatchObject({ code: 0 });
    const second = await admin(plain, ["access", "set", "acme", "--file", file("basic2.yaml", policy(`      - {name: scanner, passwordHash: "${two.stdout.trim()}"}\n      - {name: printer, passwordHash: "${hashed}"}\n`))]);
    expect(second.code).toBe(0);

    const { events } = await plain.admin.listAuditEvents({ tenant: "acme", action: "access.set" });
    const [latest, earlier] = events.map((e) => eventJson(e));
    expect(latest!.actor).toBe("admin:bootstrap");
    // Newest first; each change with the policy before and after it, as proto JSON.
    expect(latest!.before).toEqual(earlier!.after);
    expect(earlier!.before).toBeUndefined();
    expect(latest!.after).toMatchObject({ rules: [{ name: "devices", require: ["basic"], basicUsers: [{ name: "scanner" }, { name: "printer" }] }] });
    const fingerprints = (e: Record<string, Record<string, unknown>>) =>
      ((e.after!.rules as Array<{ basicUsers: Array<{ passwordHash: string }> }>)[0]!.basicUsers).map((u) => u.passwordHash);
    expect(fingerprints(latest!)).toEqual([expect.stringMatching(/^sha256:[0-9a-f]{12}$/), fingerprints(earlier!)[0]]);
    expect(fingerprints(latest!)[0]).not.toBe(fingerprints(earlier!)[0]); // the scanner's password changed
    const trail = JSON.stringify(events.map(eventJson));
    for (const h of [hashed, two.stdout.trim()]) expect(trail).not.toContain(h.split("$").pop()!);
  });

  it("roles: a viewer reads but cannot set; a tenant token sets only its own tenant's policy", async () => {
    const viewer = (await plain.admin.createToken({ role: "viewer" })).secret;
    const acme = (await plain.admin.createToken({ role: "tenant:acme" })).secret;
    const policyFile = file("roles.yaml", "rules:\n  - targets: [crm]\n    require: [apiKey]\n");
    expect((await admin(plain, ["access", "get", "acme"], viewer)).code).toBe(0);
    const viewerSet = await admin(plain, ["access", "set", "acme", "--file", policyFile], viewer);
    expect(viewerSet).toMatchObject({ code: 2, stderr: "ferry: permission_denied: viewer tokens are read only\n" });
    expect(await admin(plain, ["access", "set", "acme", "--file", policyFile], acme)).toMatchObject({ code: 0 });
    const elsewhere = await admin(plain, ["access", "set", "globex", "--file", policyFile], acme);
    expect(elsewhere).toMatchObject({ code: 2, stderr: 'ferry: permission_denied: a token for tenant "acme" reaches only that tenant\n' });
    expect((await admin(plain, ["access", "get", "globex"], acme)).code).toBe(2);
    expect(plain.relay.catalog.accessPolicies.getAccessPolicy("globex")).toBeUndefined();
  });
});

describe("ferry admin client-keys", () => {
  it("create --json: the secret once, with every field; the human form shows it once with a warning", async () => {
    const started = Date.now();
    const r = await admin(plain, ["client-keys", "create", "acme", "--targets", "crm,erp", "--expires", "30d", "--description", "partner A", "--json"]);
    expect(r, r.stderr).toMatchObject({ code: 0, stderr: "" });
    const key = JSON.parse(r.stdout) as Record<string, string | string[]>;
    expect(Object.keys(key)).toEqual(["secret", "keyId", "tenant", "description", "createTime", "expireTime", "targets"]);
    expect(key).toMatchObject({ tenant: "acme", description: "partner A", targets: ["crm", "erp"] });
    expect(key.secret).toMatch(new RegExp(`^fcl_${String(key.keyId)}_[A-Za-z0-9_-]{43}$`));
    const expires = Date.parse(String(key.expireTime));
    expect(expires).toBeGreaterThanOrEqual(started + 30 * 86_400_000 - 1000);
    expect(expires).toBeLessThanOrEqual(Date.now() + 30 * 86_400_000);
    minted(r, String(key.secret));
    expect(plain.relay.catalog.clientKeys.checkClientKey(String(key.secret))).toEqual({ ok: true, keyId: key.keyId, tenant: "acme", targets: ["crm", "erp"] });

    const human = await admin(plain, ["client-keys", "create", "acme"]);
    const m = /^created client key ([a-z0-9]{16}) for tenant acme \(every target; no expiry\)\n\nclient key \(shown once, store it now; clients send it as "Authorization: Bearer <key>"\):\n\n {2}(fcl_\S+)\n\n$/.exec(human.stdout);
    expect(m, human.stdout).not.toBeNull();
    minted(human, m![2]!);
  });

  it("list shows status, targets and description, never a secret; revoke refuses the key at once", async () => {
    const { key, secret } = await plain.admin.createClientKey({ tenant: "globex", targets: ["app"], description: "to revoke" });
    clientSecrets.add(secret);
    const revoked = await admin(plain, ["client-keys", "revoke", "globex", key!.keyId]);
    expect(revoked).toMatchObject({ code: 0, stdout: `revoked client key ${key!.keyId} of tenant globex\n` });
    expect(plain.relay.catalog.clientKeys.checkClientKey(secret)).toEqual({ ok: false, reason: "revoked" });
    const kept = await plain.admin.createClientKey({ tenant: "globex" });
    clientSecrets.add(kept.secret);

    const list = await admin(plain, ["client-keys", "list", "globex"]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^KEY ID\s+STATUS\s+TARGETS\s+CREATED\s+DESCRIPTION\n/);
    expect(list.stdout).toMatch(new RegExp(`^${key!.keyId}\\s+revoked ${ISO}\\s+app\\s+${ISO}\\s+to revoke$`, "m"));
    expect(list.stdout).toMatch(new RegExp(`^${kept.key!.keyId}\\s+valid\\s+all\\s+${ISO}$`, "m"));
    const { keys } = await adminJson<{ keys: Array<Record<string, unknown>> }>(plain, "client-keys", "list", "globex");
    expect(keys.map((k) => k.keyId)).toEqual([key!.keyId, kept.key!.keyId]);
    expect(keys[0]).toMatchObject({ tenant: "globex", targets: ["app"], revokeTime: expect.any(String) });
    expect(keys[1]!.revokeTime).toBeUndefined();
  });

  it("refuses bad flags (exit 1), bad targets and unknown keys (exit 2); another tenant's key is not found", async () => {
    expect(await admin(plain, ["client-keys", "create", "acme", "--expires", "soon"])).toMatchObject({ code: 1, stderr: expect.stringMatching(/^ferry: --expires: "soon" is not a duration/) });
    expect(await admin(plain, ["client-keys", "create", "acme", "--targets", "crm,Bad_Name"])).toMatchObject({
      code: 2,
      stderr: 'ferry: invalid_argument: targets entry "Bad_Name" is not a DNS label (a target name)\n',
    });
    expect(await admin(plain, ["client-keys", "revoke", "acme", "0000000000000000"])).toMatchObject({
      code: 2,
      stderr: 'ferry: not_found: tenant "acme" has no client key "0000000000000000"\n',
    });
    const theirs = await plain.admin.createClientKey({ tenant: "globex" });
    clientSecrets.add(theirs.secret);
    const acme = (await plain.admin.createToken({ role: "tenant:acme" })).secret;
    expect(await admin(plain, ["client-keys", "revoke", "acme", theirs.key!.keyId], acme)).toMatchObject({ code: 2, stderr: expect.stringMatching(/^ferry: not_found: /) });
    expect(plain.relay.catalog.clientKeys.checkClientKey(theirs.secret).ok).toBe(true);
    const viewer = (await plain.admin.createToken({ role: "viewer" })).secret;
    expect(await admin(plain, ["client-keys", "create", "acme"], viewer)).toMatchObject({ code: 2, stderr: "ferry: permission_denied: viewer tokens are read only\n" });
    expect((await admin(plain, ["client-keys", "list", "acme"], viewer)).code).toBe(0);
  });

  it("the audit trail has each create and revoke with the key's fields, never its secret", async () => {
    const { key, secret } = await plain.admin.createClientKey({ tenant: "acme", description: "audited", targets: ["crm"] });
    clientSecrets.add(secret);
    await plain.admin.revokeClientKey({ tenant: "acme", keyId: key!.keyId });
    const { events } = await plain.admin.listAuditEvents({ tenant: "acme", action: "client-key.", pageSize: 1000 });
    const mine = events.filter((e) => e.details?.keyId === key!.keyId).map((e) => eventJson(e));
    expect(mine.map((e) => e.action)).toEqual(["client-key.revoke", "client-key.create"]);
    expect(mine[1]!.after).toMatchObject({ keyId: key!.keyId, tenant: "acme", description: "audited", targets: ["crm"] });
    expect(mine[0]!.before!.revokeTime).toBeUndefined();
    expect(mine[0]!.after!.revokeTime).toEqual(expect.any(String));
    const all = JSON.stringify((await plain.admin.listAuditEvents({ pageSize: 1000 })).events.map(eventJson));
    expect(clientSecrets.size).toBeGreaterThanOrEqual(5);
    for (const s of clientSecrets) expect(all).not.toContain(secretPart(s));
  });
});

describe("deleting a tenant", () => {
  it("removes its policy and client keys: a new tenant of the name has neither, and the old keys never work again", async () => {
    await plain.admin.createTenant({ name: "doomed" });
    await plain.admin.setAccessPolicy({ tenant: "doomed", policy: { rules: [{ targets: ["*"], require: ["apiKey"] }] } });
    const { secret } = await plain.admin.createClientKey({ tenant: "doomed" });
    clientSecrets.add(secret);
    const del = await admin(plain, ["tenants", "delete", "doomed"]);
    expect(del.code).toBe(0);
    expect(plain.relay.catalog.accessPolicies.getAccessPolicy("doomed")).toBeUndefined();
    expect(plain.relay.catalog.clientKeys.checkClientKey(secret)).toEqual({ ok: false, reason: "unknown" });
    await plain.admin.createTenant({ name: "doomed" });
    expect((await plain.admin.getAccessPolicy({ tenant: "doomed" })).policy!.rules).toEqual([]);
    expect((await plain.admin.listClientKeys({ tenant: "doomed" })).keys).toEqual([]);
    expect(plain.relay.catalog.clientKeys.checkClientKey(secret)).toEqual({ ok: false, reason: "unknown" });
  });
});

describe("--help", () => {
  it.each([
    [["access"]],
    [["access", "set"]],
    [["access", "get"]],
    [["access", "hash-password"]],
    [["client-keys"]],
    [["client-keys", "create"]],
    [["client-keys", "list"]],
    [["client-keys", "revoke"]],
  ])("ferry admin %j --help prints usage and exits 0", async (args) => {
    const r = await ferry(["admin", ...args, "--help"]);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout).toMatch(new RegExp(`^Usage: ferry admin ${args.join(" ")}`));
  });

  it("access --help shows a policy file; hash-password --help keeps the password off the command line", async () => {
    expect((await ferry(["admin", "access", "--help"])).stdout).toContain("require: [apiKey, jwt]");
    expect((await ferry(["admin", "access", "hash-password", "--help"])).stdout).toContain('printf %s "$PASSWORD" | ferry admin access hash-password');
  });
});

describe("two cluster nodes", () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let kv: KV;
  let a: TestRelay;
  let b: TestRelay;
  const node = (nodeId: string) => startTestRelay({ nats: { servers: [nats.url] }, nodeId });

  beforeAll(async () => {
    nats = await startNatsServer();
    [a, b] = await Promise.all([node("a"), node("b")]);
    nc = await connect({ servers: nats.url });
    kv = await nc.jetstream().views.kv("ferry_state", { bindOnly: true });
    await a.admin.createTenant({ name: "spread" });
    await eventually(() => b.relay.catalog.getTenant("spread") !== undefined, "tenant on B");
  });
  afterAll(async () => {
    await nc?.close();
    await Promise.all([a, b].map((r) => r?.close()));
    await nats?.close();
  });

  it("a client key revoked on one node is refused on the other within a second", async () => {
    const { key, secret } = await a.admin.createClientKey({ tenant: "spread" });
    clientSecrets.add(secret);
    await eventually(() => b.relay.catalog.clientKeys.checkClientKey(secret).ok, "the key on B");
    const started = Date.now();
    await a.admin.revokeClientKey({ tenant: "spread", keyId: key!.keyId });
    await eventually(() => !b.relay.catalog.clientKeys.checkClientKey(secret).ok, "B to refuse the key", 1000);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(b.relay.catalog.clientKeys.checkClientKey(secret)).toEqual({ ok: false, reason: "revoked" });
    expect((await b.admin.listClientKeys({ tenant: "spread" })).keys[0]!.revokeTime).toBeDefined();
  });

  it("a policy set on one node applies on the other within a second", async () => {
    const started = Date.now();
    await b.admin.setAccessPolicy({ tenant: "spread", policy: { rules: [{ name: "office", targets: ["*"], allowIps: ["198.51.100.0/24"] }] } });
    await eventually(() => a.relay.catalog.accessPolicies.getAccessPolicy("spread")?.rules[0]?.name === "office", "the policy on A", 1000);
    expect(Date.now() - started).toBeLessThan(1000);
    const { policy } = await a.admin.getAccessPolicy({ tenant: "spread" });
    expect(policy!.rules[0]!.allowIps).toEqual(["198.51.100.0/24"]);
  });

  it("a hostile record in the bucket makes the tenant's policy unusable on every node (deny all) until it is set again", async () => {
    await kv.put("access-policy.spread", new TextEncoder().encode(JSON.stringify({ tenant: "spread", policy: { rules: [{ targets: ["*"], require: ["sudo"] }] } })));
    for (const r of [a, b]) {
      await eventually(() => r.relay.catalog.accessPolicies.policyUnusable("spread"), `node ${r.relay.nodeId} to see the record`);
      expect(r.relay.catalog.accessPolicies.getAccessPolicy("spread")).toBe(UNUSABLE_ACCESS_POLICY);
      expect([...r.relay.faults.faults().values()]).toContainEqual({ source: "store", reason: "policy_invalid", count: expect.any(Number) });
      const err = await r.admin.getAccessPolicy({ tenant: "spread" }).catch((e: unknown) => ConnectError.from(e));
      expect(err).toMatchObject({ code: Code.FailedPrecondition, rawMessage: expect.stringContaining("cannot be used, so every request to its targets is refused") });
    }
    await a.admin.setAccessPolicy({ tenant: "spread", policy: { rules: [{ targets: ["app"] }] } });
    for (const r of [a, b]) await eventually(() => r.relay.catalog.accessPolicies.getAccessPolicy("spread")?.rules[0]?.targets[0] === "app", `node ${r.relay.nodeId} fixed`);
    const { events } = await a.admin.listAuditEvents({ tenant: "spread", action: "access.set" });
    expect(events[0]!.details?.replacedUnusable).toBe(true);
  });
});

describe("secrets", () => {
  it("no CLI output shows a client secret, except the create command that minted it (once)", () => {
    expect(ran.length).toBeGreaterThan(30);
    expect(ran.filter((r) => r.shows).length).toBe(2);
    for (const r of ran) {
      for (const s of clientSecrets) {
        if (s === r.shows) continue;
        expect(`${r.stdout}\n${r.stderr}`, `ferry ${r.args.join(" ")}`).not.toContain(secretPart(s));
      }
    }
  });
});

/** What follows "fcl_<id>_": the part of a client key that must never be shown again. */
function secretPart(secret: string): string {
  return secret.slice("fcl_0123456789abcdef_".length);
}

function eventJson(e: AuditEvent): Record<string, Record<string, unknown>> {
  return toJson(AuditEventSchema, e) as Record<string, Record<string, unknown>>;
}

/** Marks `r` as the create output allowed to print `secret`, exactly once. */
function minted(r: Ran, secret: string): void {
  expect(r.stdout.split(secret).length - 1, "the secret is printed exactly once").toBe(1);
  r.shows = secret;
  clientSecrets.add(secret);
}
