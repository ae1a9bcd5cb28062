import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { connectorCommand } from "../../clients/cli/connector-command.js";
import { connectorUnit, DEFAULT_CONNECTOR_UNIT } from "../../clients/cli/connector-unit.js";
import { relayCommand } from "../../clients/cli/relay-command.js";
import { loadConnectorSettings } from "../../clients/connector/connector-config.js";
import { parseDuration } from "../../core/duration.js";
import { RELAY_DEFAULTS } from "../../services/relay/relay-config.js";

// The systemd units in packaging/: the connector's is what install-service writes with the defaults, and both
// pass systemd's own checks where systemd-analyze exists.
const PACKAGING = resolve(import.meta.dirname, "../../packaging/systemd");
const CONNECTOR_UNIT = join(PACKAGING, "ferry-connector.service");
const RELAY_UNIT = join(PACKAGING, "ferry-relay.service");
const SYSTEMD_ANALYZE = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].find((p) => existsSync(p));
const KEY = "fck_0a1b2c3d4e5f6g7h_HVDIvBXJGfcgcUwf0C9moS5ppf-f3m2qh_BnG9buZVU";

const dir = mkdtempSync(join(tmpdir(), "ferry-units-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The [Service] settings of a unit, each key's values in order (comments and blank lines left out). */
function settings(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) out.set(m[1]!, [...(out.get(m[1]!) ?? []), m[2]!]);
  }
  return out;
}

function one(unit: Map<string, string[]>, key: string): string {
  const values = unit.get(key) ?? [];
  expect(values, key).toHaveLength(1);
  return values[0]!;
}

/**
 * The unit as `verify` should see it on a host where Ferry is installed: the same file under the same name,
 * with ExecStart's program pointed at one that exists here (verify fails on a missing one). `edit` breaks it.
 */
function copyForVerify(file: string, edit: (text: string) => string = (t) => t, program = process.execPath): string {
  const sub = mkdtempSync(join(dir, "verify-"));
  const copy = join(sub, file.split("/").at(-1)!);
  writeFileSync(copy, edit(readFileSync(file, "utf8").replace(/^ExecStart=\S+/m, `ExecStart=${program}`)));
  return copy;
}

/** systemd-analyze's exit code and everything it printed: a clean unit gives 0 and nothing. */
function analyze(...args: string[]): { code: number | null; output: string } {
  const r = spawnSync(SYSTEMD_ANALYZE!, args, { encoding: "utf8", timeout: 30_000 });
  return { code: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

describe("ferry-connector.service", () => {
  it("is connectorUnit() with the defaults, byte for byte (-u rewrites the packaged file)", async () => {
    await expect(connectorUnit(DEFAULT_CONNECTOR_UNIT)).toMatchFileSnapshot(CONNECTOR_UNIT);
  });

  it("runs `connector --config` with flags the connector has, and gives it longer to stop than its grace", () => {
    const unit = settings(readFileSync(CONNECTOR_UNIT, "utf8"));
    const [program, verb, ...args] = one(unit, "ExecStart").split(" ");
    expect(program).toBe("/usr/local/bin/ferry-connector");
    expect(verb).toBe("connector");
    expect(args).toEqual(["--config", "/etc/ferry/connector.yaml"]);
    const known = connectorCommand().options.map((o) => o.long);
    for (const flag of args.filter((a) => a.startsWith("--"))) expect(known).toContain(flag);
    const { graceMs } = loadConnectorSettings({ relay: ["https://relay.example.com"], key: KEY, target: ["app=http://127.0.0.1:1"] }, {});
    expect(parseDuration(one(unit, "TimeoutStopSec"))).toBeGreaterThan(graceMs);
    expect(one(unit, "EnvironmentFile")).toBe("-/etc/ferry/connector.env");
  });

  it("with --user, names the user and keeps DynamicUser (an existing user is then used)", () => {
    const unit = settings(connectorUnit({ ...DEFAULT_CONNECTOR_UNIT, user: "ferry" }));
    expect(one(unit, "User")).toBe("ferry");
    expect(one(unit, "DynamicUser")).toBe("yes");
    expect(settings(connectorUnit(DEFAULT_CONNECTOR_UNIT)).has("User")).toBe(false);
  });
});

describe("ferry-relay.service", () => {
  it("runs `relay` with flags the relay has, its state in the StateDirectory, and longer to stop than drain + grace", () => {
    const unit = settings(readFileSync(RELAY_UNIT, "utf8"));
    const [program, ferry, verb, ...args] = one(unit, "ExecStart").split(" ");
    expect([program, ferry]).toEqual(["/usr/bin/env", "ferry"]);
    expect(verb).toBe("relay");
    const known = relayCommand().options.map((o) => o.long);
    for (const flag of args.filter((a) => a.startsWith("--"))) expect(known).toContain(flag);
    expect(one(unit, "StateDirectory")).toBe("ferry");
    expect(args[args.indexOf("--data") + 1]).toBe("/var/lib/ferry");
    expect(parseDuration(one(unit, "TimeoutStopSec"))).toBeGreaterThan(RELAY_DEFAULTS.graceMs + RELAY_DEFAULTS.clusterDrainDelayMs);
    expect(one(unit, "EnvironmentFile")).toBe("-/etc/ferry/relay.env");
  });
});

describe.each([
  ["ferry-connector.service", CONNECTOR_UNIT],
  ["ferry-relay.service", RELAY_UNIT],
])("%s, sandboxed", (_name, file) => {
  it("as a dynamic user with no capabilities, restarted on failure", () => {
    const unit = settings(readFileSync(file, "utf8"));
    expect(one(unit, "DynamicUser")).toBe("yes");
    expect(unit.get("CapabilityBoundingSet")).toEqual([""]);
    expect(unit.has("AmbientCapabilities")).toBe(false);
    expect(one(unit, "Restart")).toBe("on-failure");
    expect(one(unit, "KillSignal")).toBe("SIGTERM");
    expect(one(unit, "LimitNOFILE")).toBe("65536");
    for (const [key, value] of [
      ["NoNewPrivileges", "yes"],
      ["ProtectSystem", "strict"],
      ["ProtectHome", "yes"],
      ["PrivateTmp", "yes"],
      ["PrivateDevices", "yes"],
      ["ProtectKernelTunables", "yes"],
      ["ProtectKernelModules", "yes"],
      ["ProtectKernelLogs", "yes"],
      ["ProtectControlGroups", "yes"],
      ["RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"],
      ["RestrictNamespaces", "yes"],
      ["LockPersonality", "yes"],
      ["SystemCallFilter", "@system-service"],
    ] as const) {
      expect(one(unit, key), key).toBe(value);
    }
  });

  it("lets V8 JIT: no MemoryDenyWriteExecute", () => {
    const unit = settings(readFileSync(file, "utf8"));
    expect(unit.has("MemoryDenyWriteExecute")).toBe(false);
  });
});

describe.skipIf(!SYSTEMD_ANALYZE)(`systemd-analyze (${SYSTEMD_ANALYZE ?? "not installed here: skipped"})`, () => {
  const units = [
    ["ferry-connector.service", CONNECTOR_UNIT],
    ["ferry-relay.service", RELAY_UNIT],
  ];

  it.each(units)("verify %s: exit 0 and not a word", (_name, file) => {
    expect(analyze("verify", "--man=no", copyForVerify(file))).toEqual({ code: 0, output: "" });
  });

  it("verify fails a unit whose program is missing", () => {
    const r = analyze("verify", "--man=no", copyForVerify(CONNECTOR_UNIT, (t) => t, join(dir, "no-such-ferry")));
    expect(r.code).not.toBe(0);
    expect(r.output).toContain("no-such-ferry");
  });

  // verify warns about a bad value or an unknown key but exits 0: silence is what a good unit gets.
  it.each([
    ["a bad value", (t: string) => t.replace("Restart=on-failure", "Restart=sometimes"), "sometimes"],
    ["a misspelt key", (t: string) => t.replace("ProtectSystem=strict", "ProtectSytem=strict"), "ProtectSytem"],
    ["a setting outside its section", (t: string) => t.replace("[Service]", "[Service]\n[Bogus]"), "Bogus"],
  ])("verify speaks up about %s", (_what, edit, word) => {
    const r = analyze("verify", "--man=no", copyForVerify(CONNECTOR_UNIT, edit));
    expect(r.output).toContain(word);
  });

  it.each(units)("security: %s stays at exposure 2.0 or less", (_name, file) => {
    const r = analyze("security", "--offline=yes", "--threshold=20", "--no-pager", copyForVerify(file));
    expect(r.code, r.output.split("\n").slice(-3).join("\n")).toBe(0);
  });

  it("security fails a unit with its sandbox taken out", () => {
    const bare = (t: string) => t.split("\n").filter((l) => !/^(Protect|Private|Restrict|SystemCall|Capability|NoNew|Lock)/.test(l)).join("\n");
    expect(analyze("security", "--offline=yes", "--threshold=20", "--no-pager", copyForVerify(CONNECTOR_UNIT, bare)).code).not.toBe(0);
  });
});
