import { Command } from "commander";
import { chmodSync, existsSync, mkdirSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { writeFileAtomically } from "../../core/atomic-file.js";
import { maskedConnectorKey } from "../../core/connector-key.js";
import { FerryError } from "../../core/errors.js";
import { readSecretFile, secretAlone } from "../../core/secret-file.js";
import { connectorUnit, DEFAULT_CONNECTOR_UNIT } from "./connector-unit.js";
import { defaultExec, execWarnings } from "./service-exec.js";
import { collect } from "./run.js";

const UNIT_NAME = "ferry-connector";
const UNIT_DIR = "/etc/systemd/system";
/** What is read from a pipe at most: a key, not a file. */
const MAX_STDIN_BYTES = 64 * 1024;

interface InstallFlags {
  relay?: string[];
  target?: string[];
  keyFile?: string;
  unitDir?: string;
  configDir?: string;
  exec?: string;
  user?: string;
  dryRun?: boolean;
  force?: boolean;
}

/** One file install-service writes; `shown`, when set, is its text as printed (the key masked). */
interface PlannedFile {
  path: string;
  mode: number;
  text: string;
  shown?: string;
}

export function installServiceCommand(): Command {
  return new Command("install-service")
    .description("Install the connector as a systemd service: writes its unit, its config and its key (mode 0600); runs no systemctl.")
    .option("--relay <url>", "relay URL, http:// or https:// (repeatable)", collect)
    .option("--target <name=url>", "a target: NAME=http://host:port[/base] (repeatable)", collect)
    .option("--key-file <file>", "file holding the connector key (fck_...), or - for stdin; or set FERRY_CONNECTOR_KEY")
    .option("--unit-dir <dir>", "where ferry-connector.service goes (default /etc/systemd/system)")
    .option("--config-dir <dir>", "where connector.yaml and connector.env go (default /etc/ferry)")
    .option("--exec <path>", "the program the unit runs (default: this one: the connector binary, or ferry)")
    .option("--user <name>", "run as this user when it exists, a dynamic one of that name otherwise (default: a dynamic user)")
    .option("--dry-run", "print each file it would write and its mode, the key masked; write nothing")
    .option("--force", "overwrite files that exist")
    .addHelpText(
      "after",
      `
Writes (each file with its mode from the start, and replaced whole, by a rename):
  /etc/systemd/system/ferry-connector.service   0644
  /etc/ferry/connector.yaml                     0644  relays and targets; add other settings by hand
  /etc/ferry/connector.env                      0600  FERRY_CONNECTOR_KEY, read by systemd as root

Example (the key on stdin or in FERRY_CONNECTOR_KEY, never on the command line):
  read -rs KEY     # paste the key (fck_...), then Enter
  printf %s "$KEY" | sudo ferry connector install-service --key-file - \\
    --relay https://relay.example.com --target crm=http://10.0.0.5:8080
  sudo systemctl daemon-reload && sudo systemctl enable --now ferry-connector
`,
    )
    .action(async (_o: InstallFlags, cmd: Command) => {
      const printed = await installService(flagsOf(cmd), process.env);
      process.stdout.write(printed);
    });
}

/**
 * This command's flags, with those `ferry connector` took. The program does not use positional options, so
 * commander gives an option after `install-service` that `connector` also has to `connector`: --relay,
 * --target and --key-file are taken from there too, and any other connector flag is refused rather than
 * silently dropped.
 */
function flagsOf(cmd: Command): InstallFlags {
  const own = cmd.opts<InstallFlags>();
  const parent = cmd.parent;
  if (!parent) return own;
  const taken = parent.opts<InstallFlags & { key?: string }>();
  if (taken.key !== undefined) {
    throw usage("install-service takes no --key: the command line is in ps and shell history; set FERRY_CONNECTOR_KEY or give --key-file FILE (or - for stdin)");
  }
  const stray = parent.options.find((o) => !["relay", "target", "keyFile"].includes(o.attributeName()) && parent.getOptionValueSource(o.attributeName()) === "cli");
  if (stray) throw usage(`install-service takes no ${stray.long}: it writes relays and targets; add other settings to connector.yaml (see ferry connector --help)`);
  return {
    ...own,
    relay: [...(taken.relay ?? []), ...(own.relay ?? [])],
    target: [...(taken.target ?? []), ...(own.target ?? [])],
    keyFile: own.keyFile ?? taken.keyFile,
  };
}

/** Checks everything, then writes the files (or, with --dry-run, only describes them); returns what to print. */
async function installService(flags: InstallFlags, env: NodeJS.ProcessEnv): Promise<string> {
  const warn = (line: string) => process.stderr.write(`${line}\n`);
  if (!flags.relay?.length) throw usage("no relay: give --relay URL (repeatable)");
  if (!flags.target?.length) throw usage("no target: give --target NAME=URL (repeatable)");
  const key = await readKey(flags.keyFile, env, warn);
  // Loaded here, as `ferry connector` does, so listing the commands never pays for them.
  const { loadConnectorSettings } = await import("../connector/connector-config.js");
  const { stringify } = await import("yaml");
  // The connector's own rules for relays, targets and the key: what it accepts at start, nothing else.
  loadConnectorSettings({ relay: flags.relay, target: flags.target, key }, {}, warn);

  const configDir = unitPath(flags.configDir ?? dirname(DEFAULT_CONNECTOR_UNIT.configFile), "--config-dir");
  const unitDir = unitPath(flags.unitDir ?? UNIT_DIR, "--unit-dir");
  const exec = unitPath(flags.exec ?? defaultExec(), "--exec");
  if (flags.user !== undefined && !/^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/.test(flags.user)) {
    throw usage(`--user "${flags.user}" is not a user name (letters, digits, '_', '.', '-'; at most 32)`);
  }
  for (const line of execWarnings(exec)) warn(`warning: ${line}`);

  const configFile = join(configDir, basename(DEFAULT_CONNECTOR_UNIT.configFile));
  const envFile = join(configDir, basename(DEFAULT_CONNECTOR_UNIT.envFile));
  const unitFile = join(unitDir, `${UNIT_NAME}.service`);
  const masked = maskedConnectorKey(key);
  const envHeader = `# The connector key for ${UNIT_NAME}.service, read by systemd as root (EnvironmentFile=). Keep it 0600.\n`;
  const files: PlannedFile[] = [
    // The key first and the unit last: a unit is never there before the files it names.
    { path: envFile, mode: 0o600, text: `${envHeader}FERRY_CONNECTOR_KEY=${key}\n`, shown: `${envHeader}FERRY_CONNECTOR_KEY=${masked}\n` },
    // Readable by all: the service's user is allocated at each start, and the file holds no secret.
    { path: configFile, mode: 0o644, text: configText(flags.relay, flags.target, envFile, stringify) },
    { path: unitFile, mode: 0o644, text: connectorUnit({ exec, configFile, envFile, user: flags.user }) },
  ];

  const existing = files.filter((f) => existsSync(f.path)).map((f) => f.path);
  if (existing.length && !flags.force) {
    throw new FerryError("already_exists", "file_exists", `${existing.join(", ")} ${existing.length > 1 ? "exist" : "exists"}: give --force to overwrite (nothing was written)`);
  }
  if (flags.dryRun) {
    return `dry run: nothing written; it would write:\n${files.map((f) => `\n${f.path} (mode ${octal(f.mode)}):\n${indent(f.shown ?? f.text)}`).join("")}`;
  }
  const written: string[] = [];
  for (const f of files) {
    await writeFile(f, written);
    written.push(f.path);
  }
  if ((statSync(configDir).mode & 0o001) === 0) {
    warn(`warning: ${configDir} is closed to other users: the service's user will not reach connector.yaml (chmod o+x ${configDir})`);
  }
  // A service that runs already reads its files again only when it starts again.
  const start = existing.length ? `systemctl daemon-reload && systemctl restart ${UNIT_NAME}` : `systemctl daemon-reload && systemctl enable --now ${UNIT_NAME}`;
  return `${files.map((f) => `wrote ${f.path} (mode ${octal(f.mode)})\n`).join("")}
next (install-service runs no systemctl):
  ${start}
  journalctl -u ${UNIT_NAME} -f
`;
}

/** The key from --key-file (a file, or - for stdin), else FERRY_CONNECTOR_KEY: never from argv. */
async function readKey(keyFile: string | undefined, env: NodeJS.ProcessEnv, warn: (line: string) => void): Promise<string> {
  if (keyFile === "-") return readStdinKey();
  if (keyFile) return readSecretFile(keyFile, "--key-file", warn);
  const key = env.FERRY_CONNECTOR_KEY?.trim();
  if (key) return key;
  throw usage("no connector key: set FERRY_CONNECTOR_KEY, or give --key-file FILE, or --key-file - and the key on stdin");
}

async function readStdinKey(): Promise<string> {
  if (process.stdin.isTTY) throw usage("--key-file -: stdin is a terminal; pipe the key in (… | ferry connector install-service --key-file - …) or set FERRY_CONNECTOR_KEY");
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_STDIN_BYTES) throw usage(`--key-file -: stdin holds more than ${MAX_STDIN_BYTES / 1024} KiB; give the key alone`);
    chunks.push(chunk);
  }
  return secretAlone(Buffer.concat(chunks).toString("utf8").trim(), "--key-file -: stdin");
}

/** The config the unit names: relays and targets only (the key is in the env file). */
function configText(relays: string[], targets: string[], envFile: string, stringify: (value: unknown) => string): string {
  const parsed = targets.map((spec) => {
    // Checked as NAME=URL by the connector's validation already.
    const eq = spec.indexOf("=");
    return { name: spec.slice(0, eq), url: spec.slice(eq + 1) };
  });
  return `# ${UNIT_NAME}'s settings, written by \`ferry connector install-service\`. Any setting of
# \`ferry connector --help\` may be added (unknown keys are rejected). No key here; it is in
# ${envFile}.
${stringify({ relays, targets: parsed })}`;
}

/**
 * An absolute path safe to write into the unit as it is: systemd would need quoting or escaping for
 * spaces, quotes, '\', '%' (specifiers) and '$' (variables), so those are refused instead.
 */
function unitPath(path: string, flag: string): string {
  const absolute = resolve(path);
  if (/[\s"'\\%$]|\p{Cc}/u.test(absolute)) {
    throw usage(`${flag} "${path}": paths in the unit may not hold spaces, quotes, '\\', '%' or '$'`);
  }
  return absolute;
}

/**
 * Writes one file whole or not at all (core/atomic-file.ts). Directories it has to create are 0755 whatever the
 * umask: the service's user, allocated at each start, must reach the config and systemd the unit.
 */
async function writeFile(file: PlannedFile, written: string[]): Promise<void> {
  try {
    const created = mkdirSync(dirname(file.path), { recursive: true });
    if (created !== undefined) for (let dir = dirname(file.path); dir.startsWith(created); dir = dirname(dir)) chmodSync(dir, 0o755);
    await writeFileAtomically(file.path, file.text, file.mode);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const hint = code === "EACCES" || code === "EPERM" ? " (run as root, or choose --unit-dir and --config-dir)" : "";
    const before = written.length ? `; written before it: ${written.join(", ")}` : "";
    throw new FerryError("failed_precondition", "write_failed", `cannot write ${file.path}: ${code ?? (e as Error).message}${hint}${before}`, { cause: e });
  }
}

function octal(mode: number): string {
  return `0${mode.toString(8)}`;
}

function indent(text: string): string {
  return text.replace(/^(?=.)/gm, "  ");
}

function usage(message: string): FerryError {
  return new FerryError("invalid_argument", "usage", message);
}
