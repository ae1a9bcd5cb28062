import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { connectorUnit } from "../../clients/cli/connector-unit.js";
import { loadConnectorSettings } from "../../clients/connector/connector-config.js";
import { ADMIN_TOKEN, CLI, ROOT, type FerryProcess, type RelayProcess, runFerry, spawnFerry, startRelayProcess, tempDir } from "../helpers/processes.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";

// `ferry connector install-service` as an admin runs it, into temporary directories instead of /etc: what it
// writes, with which modes, what it refuses, and that the connector runs from what it wrote.
const KEY = "fck_0a1b2c3d4e5f6g7h_HVDIvBXJGfcgcUwf0C9moS5ppf-f3m2qh_BnG9buZVU";
const SECRET_PART = KEY.slice("fck_0a1b2c3d4e5f6g7h_".length);
const SYSTEMD_ANALYZE = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].find((p) => existsSync(p));
const BASE = ["--relay", "https://relay.example.com", "--target", "crm=http://10.0.0.5:8080"];

const root = tempDir("ferry-install-service-");
afterAll(() => rmSync(root, { recursive: true, force: true }));
let seq = 0;

/** Fresh, not yet existing unit and config directories, and the flags naming them. */
function dirs(): { unitDir: string; configDir: string; args: string[] } {
  const base = join(root, `run-${seq++}`);
  const unitDir = join(base, "systemd");
  const configDir = join(base, "etc-ferry");
  return { unitDir, configDir, args: ["--unit-dir", unitDir, "--config-dir", configDir] };
}

/** Runs `ferry connector install-service ARGS` with `stdin` piped in, without the caller's FERRY_CONNECTOR_KEY. */
function install(args: string[], opts: { stdin?: string; env?: Record<string, string> } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env };
  if (!opts.env?.FERRY_CONNECTOR_KEY) delete env.FERRY_CONNECTOR_KEY;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, "connector", "install-service", ...args], { cwd: ROOT, env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(opts.stdin ?? "");
  });
}

const mode = (file: string) => statSync(file).mode & 0o777;

/** Everything under `dir`, or [] when it does not exist. */
function filesIn(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir, { recursive: true }).map(String).sort() : [];
}

describe("ferry connector install-service", () => {
  it("--help shows its own usage, and `ferry connector --help` lists it", async () => {
    const r = await runFerry(["connector", "install-service", "--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: ferry connector install-service \[options\]/);
    for (const flag of ["--relay", "--target", "--key-file", "--unit-dir", "--config-dir", "--exec", "--user", "--dry-run", "--force"]) {
      expect(r.stdout).toContain(flag);
    }
    const parent = await runFerry(["connector", "--help"]);
    expect(parent.code).toBe(0);
    expect(parent.stdout).toMatch(/^Usage: ferry connector \[options\]/);
    expect(parent.stdout).toMatch(/^ {2}install-service \[options\]/m);
  });

  it("with the key on stdin: the key file 0600, config and unit 0644, the config valid and without the key", async () => {
    const d = dirs();
    const r = await install([...BASE, "--target", "erp=http://10.0.0.6:9000/base", "--key-file", "-", "--exec", process.execPath, ...d.args], { stdin: `${KEY}\n` });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const envFile = join(d.configDir, "connector.env");
    const configFile = join(d.configDir, "connector.yaml");
    const unitFile = join(d.unitDir, "ferry-connector.service");
    expect(r.stdout).toContain(`wrote ${envFile} (mode 0600)`);
    expect(r.stdout).toContain(`wrote ${configFile} (mode 0644)`);
    expect(r.stdout).toContain(`wrote ${unitFile} (mode 0644)`);
    expect(r.stdout).toContain("systemctl daemon-reload && systemctl enable --now ferry-connector");
    expect(r.stdout).not.toContain(SECRET_PART);

    expect(filesIn(d.configDir)).toEqual(["connector.env", "connector.yaml"]); // no temporary file left
    expect(filesIn(d.unitDir)).toEqual(["ferry-connector.service"]);
    expect([mode(envFile), mode(configFile), mode(unitFile)]).toEqual([0o600, 0o644, 0o644]);

    const envLines = readFileSync(envFile, "utf8").split("\n").filter((l) => l && !l.startsWith("#"));
    expect(envLines).toEqual([`FERRY_CONNECTOR_KEY=${KEY}`]);
    const configText = readFileSync(configFile, "utf8");
    expect(configText).not.toContain(SECRET_PART);
    expect(parseYaml(configText)).toEqual({
      relays: ["https://relay.example.com"],
      targets: [
        { name: "crm", url: "http://10.0.0.5:8080" },
        { name: "erp", url: "http://10.0.0.6:9000/base" },
      ],
    });
    // The connector's own loader takes it, with the key from the environment as systemd gives it.
    const s = loadConnectorSettings({ config: configFile }, { FERRY_CONNECTOR_KEY: KEY });
    expect(s.key).toBe(KEY);
    expect(s.relays.map(String)).toEqual(["https://relay.example.com/"]);
    expect(s.targets.map((t) => [t.name, t.origin, t.basePath])).toEqual([
      ["crm", "http://10.0.0.5:8080", ""],
      ["erp", "http://10.0.0.6:9000", "/base"],
    ]);
    // The unit: the one template, with these paths.
    expect(readFileSync(unitFile, "utf8")).toBe(connectorUnit({ exec: process.execPath, configFile, envFile }));
  });

  it("with the key in FERRY_CONNECTOR_KEY and --user", async () => {
    const d = dirs();
    const r = await install([...BASE, "--user", "ferry", "--exec", process.execPath, ...d.args], { env: { FERRY_CONNECTOR_KEY: KEY } });
    expect(r.code).toBe(0);
    expect(readFileSync(join(d.configDir, "connector.env"), "utf8")).toContain(`\nFERRY_CONNECTOR_KEY=${KEY}\n`);
    expect(mode(join(d.configDir, "connector.env"))).toBe(0o600);
    const unit = readFileSync(join(d.unitDir, "ferry-connector.service"), "utf8");
    expect(unit).toMatch(/^DynamicUser=yes\nUser=ferry$/m);
    expect(unit).toContain(`ExecStart=${process.execPath} connector --config ${join(d.configDir, "connector.yaml")}\n`);
  });

  it("--dry-run prints each file and its mode, the key masked, and writes nothing", async () => {
    const d = dirs();
    const r = await install([...BASE, "--key-file", "-", "--dry-run", ...d.args], { stdin: KEY });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^dry run: nothing written/);
    expect(r.stdout).toContain(`${join(d.configDir, "connector.env")} (mode 0600):`);
    expect(r.stdout).toContain(`${join(d.configDir, "connector.yaml")} (mode 0644):`);
    expect(r.stdout).toContain(`${join(d.unitDir, "ferry-connector.service")} (mode 0644):`);
    expect(r.stdout).toContain("FERRY_CONNECTOR_KEY=fck_0a1b2c3d4e5f6g7h_***");
    expect(r.stdout).toContain("ExecStart=");
    expect(`${r.stdout}${r.stderr}`).not.toContain(SECRET_PART);
    expect(existsSync(d.configDir) || existsSync(d.unitDir)).toBe(false);
  });

  it("refuses to overwrite without --force, naming the files; --force replaces them", async () => {
    const d = dirs();
    expect((await install([...BASE, "--exec", process.execPath, ...d.args], { env: { FERRY_CONNECTOR_KEY: KEY } })).code).toBe(0);
    const configFile = join(d.configDir, "connector.yaml");
    const before = readFileSync(configFile, "utf8");
    const changed = ["--relay", "https://other.example.com", "--target", "crm=http://10.0.0.5:8080", "--exec", process.execPath, ...d.args];

    const again = await install(changed, { env: { FERRY_CONNECTOR_KEY: KEY } });
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(join(d.configDir, "connector.env"));
    expect(again.stderr).toContain(configFile);
    expect(again.stderr).toContain(join(d.unitDir, "ferry-connector.service"));
    expect(again.stderr).toContain("give --force to overwrite (nothing was written)");
    expect(readFileSync(configFile, "utf8")).toBe(before);
    // A dry run checks the same.
    expect((await install([...changed, "--dry-run"], { env: { FERRY_CONNECTOR_KEY: KEY } })).code).toBe(1);

    const forced = await install([...changed, "--force"], { env: { FERRY_CONNECTOR_KEY: KEY } });
    expect(forced.code).toBe(0);
    expect(readFileSync(configFile, "utf8")).toContain("https://other.example.com");
    expect(mode(join(d.configDir, "connector.env"))).toBe(0o600);
    expect(filesIn(d.configDir)).toEqual(["connector.env", "connector.yaml"]);
  });

  it.each([
    ["no relay", ["--target", "crm=http://10.0.0.5:8080"], { env: { FERRY_CONNECTOR_KEY: KEY } }, "no relay: give --relay URL"],
    ["no target", ["--relay", "https://relay.example.com"], { env: { FERRY_CONNECTOR_KEY: KEY } }, "no target: give --target NAME=URL"],
    ["a target without =", ["--relay", "https://relay.example.com", "--target", "crm"], { env: { FERRY_CONNECTOR_KEY: KEY } }, '--target "crm" must be NAME=URL'],
    ["a target that is not http", [...BASE, "--target", "erp=ftp://10.0.0.6"], { env: { FERRY_CONNECTOR_KEY: KEY } }, '"ftp://10.0.0.6" must start with http://'],
    ["a relay with a path", ["--relay", "https://relay.example.com/x", "--target", "crm=http://10.0.0.5:8080"], { env: { FERRY_CONNECTOR_KEY: KEY } }, "must not have a path"],
    ["a key that is not one", BASE, { env: { FERRY_CONNECTOR_KEY: "not-a-key" } }, "is not a Ferry connector key"],
    ["no key", BASE, {}, "no connector key: set FERRY_CONNECTOR_KEY, or give --key-file FILE, or --key-file -"],
    ["an empty stdin", [...BASE, "--key-file", "-"], { stdin: "" }, "--key-file -: stdin is empty"],
    ["two lines on stdin", [...BASE, "--key-file", "-"], { stdin: `${KEY}\n${KEY}\n` }, "stdin must hold the secret alone"],
    ["a key file that is not there", [...BASE, "--key-file", "/nonexistent/key"], {}, "--key-file /nonexistent/key: no such file"],
    ["the key in argv", [...BASE, "--key", KEY], {}, "install-service takes no --key"],
    ["another connector flag", [...BASE, "--tunnels", "3"], { env: { FERRY_CONNECTOR_KEY: KEY } }, "install-service takes no --tunnels"],
    ["a path systemd would need quoted", [...BASE, "--exec", "/opt/my ferry/ferry"], { env: { FERRY_CONNECTOR_KEY: KEY } }, "paths in the unit may not hold spaces"],
    ["a bad user name", [...BASE, "--user", "no body"], { env: { FERRY_CONNECTOR_KEY: KEY } }, '--user "no body" is not a user name'],
  ] as const)("refuses %s: exit 1, one clear line, nothing written", async (_what, args, opts, message) => {
    const d = dirs();
    const r = await install([...args, ...d.args], opts as { stdin?: string; env?: Record<string, string> });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ferry: /);
    expect(r.stderr).toContain(message);
    expect(r.stderr).not.toContain("unexpected error");
    expect(r.stderr).not.toContain(SECRET_PART);
    expect(existsSync(d.configDir) || existsSync(d.unitDir)).toBe(false);
  });

  it("says which file it could not write, and which it had written", async () => {
    const d = dirs();
    mkdirSync(join(d.unitDir, ".."), { recursive: true });
    writeFileSync(d.unitDir, "a file where the unit directory should be");
    const r = await install([...BASE, "--exec", process.execPath, ...d.args], { env: { FERRY_CONNECTOR_KEY: KEY } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`ferry: cannot write ${join(d.unitDir, "ferry-connector.service")}`);
    expect(r.stderr).toContain(`written before it: ${join(d.configDir, "connector.env")}, ${join(d.configDir, "connector.yaml")}`);
  });

  it("makes the directories it creates 0755 under a strict umask (the service's user must reach the config)", async () => {
    const d = dirs();
    const r = spawnSync("sh", ["-c", `umask 077 && exec "$0" "$@"`, process.execPath, CLI, "connector", "install-service", ...BASE, "--exec", process.execPath, ...d.args], {
      env: { ...process.env, FERRY_CONNECTOR_KEY: KEY },
      encoding: "utf8",
    });
    expect(r.stderr).not.toContain("closed to other users");
    expect(r.status).toBe(0);
    expect([mode(d.configDir), mode(d.unitDir), mode(join(d.configDir, "connector.yaml")), mode(join(d.configDir, "connector.env"))]).toEqual([0o755, 0o755, 0o644, 0o600]);
    expect(r.stdout).toContain("systemctl daemon-reload && systemctl enable --now ferry-connector");
    const again = await install([...BASE, "--exec", process.execPath, ...d.args, "--force"], { env: { FERRY_CONNECTOR_KEY: KEY } });
    expect(again.stdout).toContain("systemctl daemon-reload && systemctl restart ferry-connector");
  });

  it("warns when the config directory is closed to the service's user", async () => {
    const d = dirs();
    mkdirSync(d.configDir, { recursive: true, mode: 0o700 });
    const r = await install([...BASE, "--exec", process.execPath, ...d.args], { env: { FERRY_CONNECTOR_KEY: KEY } });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`warning: ${d.configDir} is closed to other users`);
  });

  it("runs by default the `ferry` on PATH when it is this program, else the script itself", async () => {
    const bin = join(root, "bin");
    mkdirSync(bin, { recursive: true });
    symlinkSync(CLI, join(bin, "ferry"));
    const env = { FERRY_CONNECTOR_KEY: KEY };
    const onPath = await install([...BASE, "--dry-run", ...dirs().args], { env: { ...env, PATH: `${bin}:${process.env.PATH}` } });
    expect(onPath.stdout).toContain(`ExecStart=${join(bin, "ferry")} connector --config `);
    const plain = await install([...BASE, "--dry-run", ...dirs().args], { env: { ...env, PATH: "/usr/bin:/bin" } });
    expect(plain.stdout).toContain(`ExecStart=${CLI} connector --config `);
    // dist/ scripts are not executable (npm makes the bin one so): the unit would not start, and it says so.
    if ((statSync(CLI).mode & 0o111) === 0) expect(plain.stderr).toContain(`warning: ${CLI} is not an executable file`);
  });

  it.skipIf(!SYSTEMD_ANALYZE)(`the unit it writes passes systemd-analyze verify (${SYSTEMD_ANALYZE ?? "not installed here: skipped"})`, async () => {
    const d = dirs();
    expect((await install([...BASE, "--user", "ferry", "--exec", process.execPath, ...d.args], { env: { FERRY_CONNECTOR_KEY: KEY } })).code).toBe(0);
    const r = spawnSync(SYSTEMD_ANALYZE!, ["verify", "--man=no", join(d.unitDir, "ferry-connector.service")], { encoding: "utf8" });
    expect({ code: r.status, output: `${r.stdout}${r.stderr}`.trim() }).toEqual({ code: 0, output: "" });
  });
});

describe("the connector from what install-service wrote", () => {
  let relay: RelayProcess;
  let target: TestTarget;
  let key: string;
  let connector: FerryProcess | undefined;

  beforeAll(async () => {
    target = await startTestTarget("app");
    relay = await startRelayProcess();
    const admin = (...args: string[]) => runFerry(["admin", "--relay", relay.url, ...args], { FERRY_TOKEN: ADMIN_TOKEN });
    expect((await admin("tenants", "create", "acme")).code).toBe(0);
    const created = await admin("keys", "create", "acme", "--json");
    key = (JSON.parse(created.stdout) as { secret: string }).secret;
  });
  afterAll(async () => {
    await connector?.stop("SIGKILL");
    await relay?.stop();
    await target?.close();
  });

  it("connects with the key from the env file (as systemd passes it) and serves a request", async () => {
    const d = dirs();
    const r = await install(["--relay", relay.url, "--target", `app=${target.url}`, "--key-file", "-", "--exec", process.execPath, ...d.args], { stdin: key });
    expect(r.code).toBe(0);
    // EnvironmentFile= semantics for what install-service writes: KEY=VALUE lines, '#' comments.
    const env = Object.fromEntries(
      readFileSync(join(d.configDir, "connector.env"), "utf8")
        .split("\n")
        .filter((l) => l && !l.startsWith("#"))
        .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
    // The unit's ExecStart arguments, after the program.
    const unit = readFileSync(join(d.unitDir, "ferry-connector.service"), "utf8");
    const args = /^ExecStart=\S+ (.*)$/m.exec(unit)![1]!.split(" ");
    connector = spawnFerry([...args, "--reconnect-max", "500ms"], env);
    await connector.waitForCount("tunnel connected", 2);
    const res = await fetch(`${relay.url}/relay/acme/app/echo`, { method: "POST", body: "via the installed config" });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("via the installed config");
    expect(await connector.stop("SIGTERM")).toEqual({ code: 0, signal: null });
  });
});
