import { execFile, spawn } from "node:child_process";
import { chmodSync, copyFileSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ADMIN_TOKEN,
  FerryProcess,
  type RelayProcess,
  ROOT,
  runFerry,
  startRelayProcess,
  tempDir,
} from "../helpers/processes.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";

const execFileAsync = promisify(execFile);

// The connector as one executable file (scripts/build-connector-binary.mjs): built here for this machine's
// arch, copied alone into an empty directory (no node_modules anywhere above it), and run as an on-premises
// admin runs it, against a real relay process and a real HTTP target.
const VERSION = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
const BUILD_TIMEOUT_MS = 180_000;

let binDir: string;
let bin: string;
let relay: RelayProcess;
let target: TestTarget;
let key: string;
let configFile: string;
const started: FerryProcess[] = [];
const cleanup: Array<() => Promise<unknown> | void> = [];

/** Kills whatever a failed test left running, even if afterAll does not get to it. */
process.once("exit", () => {
  for (const p of started) p.child.kill("SIGKILL");
});

/** The environment the binary gets: this one, less anything that would make Node load files from elsewhere. */
function binEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, FERRY_LOG_FORMAT: "json", ...extra };
  for (const name of ["NODE_OPTIONS", "NODE_PATH", "FERRY_CONNECTOR_KEY"]) if (!(name in extra)) delete env[name];
  return env;
}

/** Runs the binary to completion. */
async function runBin(args: string[], extra: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(bin, args, { cwd: binDir, env: binEnv(extra), timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : -1, stdout: e.stdout ?? "", stderr: e.stderr ?? String(err) };
  }
}

/** Starts the binary as a long-running process, its JSON log lines collected. */
function spawnBin(args: string[], extra: Record<string, string> = {}): FerryProcess {
  const p = new FerryProcess(spawn(bin, args, { cwd: binDir, env: binEnv(extra), stdio: ["ignore", "pipe", "pipe"] }));
  started.push(p);
  cleanup.push(() => p.stop("SIGKILL"));
  return p;
}

beforeAll(async () => {
  const out = tempDir("ferry-bin-build-");
  cleanup.push(() => rmSync(out, { recursive: true, force: true }));
  await execFileAsync(process.execPath, [join(ROOT, "scripts/build-connector-binary.mjs"), "--arch", process.arch, "--out", out], {
    cwd: ROOT,
    maxBuffer: 16 * 1024 * 1024,
  });
  binDir = tempDir("ferry-bin-");
  cleanup.push(() => rmSync(binDir, { recursive: true, force: true }));
  bin = join(binDir, "ferry-connector");
  copyFileSync(join(out, `ferry-connector-linux-${process.arch}`), bin);
  chmodSync(bin, 0o755);

  target = await startTestTarget("app");
  cleanup.push(() => target.close());
  relay = await startRelayProcess();
  cleanup.push(() => relay.stop());
  const admin = (...args: string[]) => runFerry(["admin", "--relay", relay.url, ...args], { FERRY_TOKEN: ADMIN_TOKEN });
  expect((await admin("tenants", "create", "acme")).code).toBe(0);
  const created = await admin("keys", "create", "acme", "--json");
  expect(created.code).toBe(0);
  key = (JSON.parse(created.stdout) as { secret: string }).secret;

  // The same file `ferry connector --config` reads, key inside (so mode 600).
  configFile = join(binDir, "connector.yaml");
  writeFileSync(
    configFile,
    `relays: [${relay.url}]\nkey: ${key}\ntargets:\n  - name: app\n    url: ${target.url}\ntunnels: 2\nreconnectMax: 500ms\n`,
    { mode: 0o600 },
  );
}, BUILD_TIMEOUT_MS);

afterAll(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

describe("the connector binary", () => {
  it("stands alone: one file in its directory, an ELF executable", () => {
    expect(readdirSync(binDir).sort()).toEqual(["connector.yaml", "ferry-connector"]);
    expect(readFileSync(bin).subarray(0, 4).toString("latin1")).toBe("\x7fELF");
    expect(statSync(bin).size).toBeGreaterThan(50 * 1024 * 1024); // Node itself is inside
  });

  it("--version prints package.json's version, as `ferry --version` does", async () => {
    expect(await runBin(["--version"])).toMatchObject({ code: 0, stdout: `${VERSION}\n`, stderr: "" });
    expect(await runFerry(["--version"])).toMatchObject({ code: 0, stdout: `${VERSION}\n` });
  });

  it("--help lists connector and doctor, and nothing of the relay", async () => {
    const r = await runBin(["--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: ferry-connector \[options\] \[command\]/);
    expect(r.stdout).toMatch(/^ {2}connector \[options\]/m);
    expect(r.stdout).toMatch(/^ {2}doctor \[options\]/m);
    expect(r.stdout).not.toMatch(/^ {2}(relay|admin|demo)\b/m);
    expect(r.stderr).toBe(""); // no ExperimentalWarning about single executables
  });

  it("connector --help and doctor --help work", async () => {
    const c = await runBin(["connector", "--help"]);
    expect(c.code).toBe(0);
    expect(c.stdout).toMatch(/^Usage: ferry-connector connector \[options\]/);
    expect(c.stdout).toContain("--config <file>");
    const d = await runBin(["doctor", "--help"]);
    expect(d.code).toBe(0);
    expect(d.stdout).toMatch(/^Usage: ferry-connector doctor \[options\]/);
  });

  it("fails clearly on a bad config, like `ferry connector`", async () => {
    const bad = join(binDir, "bad.yaml");
    writeFileSync(bad, `relays: [${relay.url}]\nkey: ${key}\ntargets: []\ncolour: blue\n`, { mode: 0o600 });
    try {
      const r = await runBin(["connector", "--config", bad]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^ferry: .*colour/);
    } finally {
      rmSync(bad);
    }
  });

  it("runs as the connector from a config file: a request through the relay reaches the target and its answer comes back", async () => {
    const connector = spawnBin(["connector", "--config", configFile, "--id", "binary-site"]);
    await connector.waitForCount("tunnel connected", 2);
    expect(connector.lines.find((l) => l.msg === "connector starting")).toMatchObject({ name: "connector", targets: ["app"], tunnels: 2 });

    const seenBefore = target.seen.length;
    const body = "hello through the binary";
    const res = await fetch(`${relay.url}/relay/acme/app/echo?from=binary`, { method: "POST", body });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-method")).toBe("POST");
    expect(await res.text()).toBe(body);
    expect(target.seen.slice(seenBefore)).toMatchObject([{ method: "POST", url: "/echo?from=binary" }]);

    // The relay sees it with the binary's version: the one from package.json.
    const listed = await runFerry(["admin", "--relay", relay.url, "connectors", "list", "acme", "--json"], { FERRY_TOKEN: ADMIN_TOKEN });
    expect(JSON.parse(listed.stdout)).toMatchObject({ connectors: [{ connectorId: "binary-site", version: VERSION }] });

    // SIGTERM drains and exits 0, as with `ferry connector`.
    expect(await connector.stop("SIGTERM")).toEqual({ code: 0, signal: null });
    expect(connector.lines.at(-1)).toMatchObject({ msg: "connector stopped" });
  });

  it("doctor checks the relay, the key and the target from the same config file", async () => {
    const r = await runBin(["doctor", "--config", configFile]);
    expect(r.stdout).toContain("✔ round trip");
    expect(r.stdout).toContain("✔ target app");
    expect(r.stdout).toContain("All checks passed.");
    expect(r.code).toBe(0);

    const json = await runBin(["doctor", "--json", "--relay", relay.url], { FERRY_CONNECTOR_KEY: key });
    expect(json.code).toBe(0);
    const report = JSON.parse(json.stdout) as { ok: boolean; steps: Array<{ name: string; ok: boolean; detail: string }> };
    expect(report.ok).toBe(true);
    expect(report.steps.find((s) => s.name === "key")?.detail).toContain('tenant "acme"');
  });

  it("installs itself as a service: the unit it writes runs this very file", async () => {
    const dirs = tempDir("ferry-bin-unit-");
    cleanup.push(() => rmSync(dirs, { recursive: true, force: true }));
    const args = ["connector", "install-service", "--unit-dir", join(dirs, "units"), "--config-dir", join(dirs, "etc"), "--relay", relay.url, "--target", `app=${target.url}`];
    const r = await runBin(args, { FERRY_CONNECTOR_KEY: key });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const unit = readFileSync(join(dirs, "units", "ferry-connector.service"), "utf8");
    expect(unit).toContain(`ExecStart=${bin} connector --config ${join(dirs, "etc", "connector.yaml")}`);
    expect(statSync(join(dirs, "etc", "connector.env")).mode & 0o777).toBe(0o600);
  });
});
