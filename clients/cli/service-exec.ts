import { accessSync, closeSync, constants, existsSync, openSync, readSync, realpathSync } from "node:fs";
import { delimiter, join, resolve } from "node:path";

/** The program a service unit runs: which one by default, and why systemd might not start it. */

/** systemd's PATH for services: where `#!/usr/bin/env node` looks for node under it. */
const SYSTEMD_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/**
 * The program running now: the connector binary itself (a single executable application), else the `ferry`
 * script; by the name on PATH when that is the same file, since it survives upgrades of the package.
 */
export function defaultExec(): string {
  if (process.getBuiltinModule("node:sea").isSea()) return process.execPath;
  const script = process.argv[1] ? resolve(process.argv[1]) : process.execPath;
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    const candidate = join(dir, "ferry");
    if (dir && sameFile(candidate, script)) return candidate;
  }
  return script;
}

function sameFile(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return false;
  }
}

/** Why the unit may not start with this program, as far as can be seen from here. */
export function execWarnings(exec: string): string[] {
  try {
    accessSync(exec, constants.X_OK);
  } catch {
    return [`${exec} is not an executable file (yet): the service will not start until it is`];
  }
  const out: string[] = [];
  if (/^\/(home|root|run\/user)\//.test(exec)) out.push(`${exec} is in a home directory, which ProtectHome=yes hides from the service: install it elsewhere (e.g. /usr/local/bin) and give --exec`);
  if (/^#!\S*\benv\s+node\b/.test(firstLine(exec)) && !SYSTEMD_PATH.some((d) => existsSync(join(d, "node")))) {
    out.push(`${exec} runs node from systemd's PATH (${SYSTEMD_PATH.join(":")}), which has none: install Node there, or give --exec the connector binary`);
  }
  return out;
}

function firstLine(file: string): string {
  let fd: number | undefined;
  try {
    fd = openSync(file, "r");
    const buf = Buffer.alloc(128);
    return buf.subarray(0, readSync(fd, buf)).toString("latin1").split("\n")[0]!;
  } catch {
    return "";
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
