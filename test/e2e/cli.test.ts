import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { json, request } from "../helpers/http.js";
import { ADMIN_TOKEN, type RelayProcess, runFerry, spawnFerry, startRelayProcess, tempDir } from "../helpers/processes.js";

// The CLI paths a user runs, through real processes.
let relay: RelayProcess;
let admin: (...args: string[]) => ReturnType<typeof runFerry>;

beforeAll(async () => {
  relay = await startRelayProcess();
  admin = (...args) => runFerry(["admin", "--relay", relay.url, ...args], { FERRY_TOKEN: ADMIN_TOKEN });
});
afterAll(async () => {
  await relay?.stop();
});

describe("ferry --help", () => {
  it.each([
    [[]],
    [["relay"]],
    [["connector"]],
    [["admin"]],
    [["admin", "tenants"]],
    [["admin", "tenants", "create"]],
    [["admin", "keys", "create"]],
    [["admin", "connectors", "list"]],
    [["demo"]],
  ])("ferry %j --help prints usage and exits 0", async (args) => {
    const r = await runFerry([...args, "--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: ferry/);
  });

  it("an unknown command fails with a hint", async () => {
    const r = await runFerry(["frobnicate"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("unknown command 'frobnicate'");
  });
});

describe("ferry admin", () => {
  it("creates, lists and deletes tenants", async () => {
    expect(await admin("tenants", "create", "acme")).toMatchObject({ code: 0, stdout: "created tenant acme\n" });
    const list = await admin("tenants", "list", "--json");
    expect(list.code).toBe(0);
    expect(JSON.parse(list.stdout).tenants.map((t: { name: string }) => t.name)).toContain("acme");
    expect((await admin("tenants", "list")).stdout).toMatch(/^NAME\s+STATUS\s+DISPLAY NAME\s+CREATED\nacme\s+enabled\s+\d{4}-/);
    expect(await admin("tenants", "create", "acme")).toMatchObject({ code: 2, stderr: 'ferry: already_exists: tenant "acme" already exists\n' });
    expect(await admin("tenants", "delete", "acme")).toMatchObject({ code: 0, stdout: "deleted tenant acme\n" });
    expect(await admin("tenants", "get", "acme")).toMatchObject({ code: 2, stderr: 'ferry: not_found: tenant "acme" does not exist\n' });
  });

  it("rejects bad names with a message naming the field", async () => {
    const r = await admin("tenants", "create", "Bad_Name");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('invalid_argument: tenant "Bad_Name" is not a DNS label');
  });

  it("creates a key (--json has tenant, keyId, secret), lists and revokes it", async () => {
    await admin("tenants", "create", "keyed");
    const created = await admin("keys", "create", "keyed", "--json", "--description", "site A");
    expect(created.code).toBe(0);
    const key = JSON.parse(created.stdout) as { tenant: string; keyId: string; secret: string };
    expect(Object.keys(key).sort()).toEqual(["keyId", "secret", "tenant"]);
    expect(key.tenant).toBe("keyed");
    expect(key.secret).toMatch(new RegExp(`^fck_${key.keyId}_[A-Za-z0-9_-]{43}$`));

    const human = await admin("keys", "create", "keyed");
    expect(human.stdout).toMatch(/connector key \(shown once, store it now\):\n\n {2}fck_/);

    const listed = await admin("keys", "list", "keyed");
    expect(listed.stdout).toContain(key.keyId);
    expect(listed.stdout).toContain("site A");
    expect(listed.stdout).not.toContain(key.secret.slice(21)); // the secret after "fck_<id>_"

    expect((await admin("keys", "revoke", "keyed", key.keyId)).stdout).toBe(`revoked key ${key.keyId} of tenant keyed\n`);
    const revoked = JSON.parse((await admin("keys", "list", "keyed", "--json")).stdout) as { keys: Array<{ keyId: string; revokeTime?: string }> };
    expect(revoked.keys.find((k) => k.keyId === key.keyId)?.revokeTime).toBeDefined();
  });

  it("explains a missing or wrong token", async () => {
    const missing = await runFerry(["admin", "--relay", relay.url, "tenants", "list"], { FERRY_ADMIN_TOKEN: "", FERRY_TOKEN: "" });
    expect(missing).toMatchObject({ code: 1, stderr: "ferry: no admin token: set FERRY_TOKEN or pass --token-file FILE\n" });
    const wrong = await runFerry(["admin", "--relay", relay.url, "tenants", "list"], { FERRY_TOKEN: "nope-nope-nope-nope" });
    expect(wrong).toMatchObject({ code: 2, stderr: "ferry: unauthenticated: admin token is not valid\n" });
  });

  it("takes the relay and token from the environment", async () => {
    const r = await runFerry(["admin", "tenants", "list", "--json"], { FERRY_RELAY: relay.url, FERRY_TOKEN: ADMIN_TOKEN, FERRY_ADMIN_TOKEN: "" });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toHaveProperty("tenants");
  });
});

describe("ferry connector configuration", () => {
  const key = "fck_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

  it.each([
    [["--key", key, "--target", "a=http://x"], "no relay: give --relay URL"],
    [["--relay", "http://r", "--target", "a=http://x"], "no connector key"],
    [["--relay", "http://r", "--key", "nope", "--target", "a=http://x"], "is not a Ferry connector key"],
    [["--relay", "http://r", "--key", key], "no target"],
    [["--relay", "http://r", "--key", key, "--target", "app"], '--target "app" must be NAME=URL'],
    [["--relay", "http://r", "--key", key, "--target", "App=http://x"], 'targets[0].name "App" is not a DNS label'],
    [["--relay", "http://r", "--key", key, "--target", "a=ftp://x"], 'targets[0].url "ftp://x" must start with http://, https:// or h2c://'],
    [["--relay", "http://r", "--key", key, "--target", "a=http://x", "--tunnels", "0"], "tunnels must be between 1 and 16"],
    [["--relay", "http://r", "--key", key, "--target", "a=http://x", "--reconnect-max", "soon"], '"soon" is not a duration'],
  ])("ferry connector %j fails clearly", async (args, message) => {
    const r = await runFerry(["connector", ...args], { FERRY_CONNECTOR_KEY: "" });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(message);
  });

  it("rejects unknown keys in a config file, naming the key and the file", async () => {
    const file = join(tempDir(), "connector.yaml");
    writeFileSync(file, `relays: [http://127.0.0.1:1]\nkey: ${key}\ntargets:\n  - name: app\n    url: http://127.0.0.1:2\n    colour: blue\n`);
    const r = await runFerry(["connector", "--config", file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(file);
    expect(r.stderr).toContain('"colour" is unknown');
  });
});

describe("ferry demo", () => {
  it("starts everything, prints a curl command that works, and stops on Ctrl-C", async () => {
    const demo = spawnFerry(["demo"]);
    const line = await demo.waitFor((l) => typeof l.msg === "string" && l.msg.includes("curl -i http"));
    const url = /curl -i (http\S+)/.exec(String(line.msg))![1]!;
    const res = await request(url);
    expect(res.status).toBe(200);
    expect(json<{ message: string }>(res).message).toBe("Hello from the on-prem sample target");
    expect(await demo.stop("SIGINT")).toEqual({ code: 0, signal: null });
  });
});
