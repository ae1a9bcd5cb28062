import { execFileSync, spawnSync } from "node:child_process";
import { accessSync, constants, statSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";

/** Debian packages the benchmark needs, by the command that must exist. */
const PACKAGES: Record<string, string> = { nginx: "nginx", wrk: "wrk" };

/** Only the ferry-2 setup needs nats-server; without it that setup gets a note instead of figures. */
const NATS_PACKAGE = "nats-server";

/** Where Debian and hand installs put nats-server; /usr/sbin is often not on a non-root PATH. */
const EXTRA_DIRS = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"];

/**
 * Makes sure nginx and wrk are installed: installs them from Debian when
 * running as root, otherwise stops with the command to run. nats-server is
 * installed the same way when root; when it is missing otherwise (or its
 * install fails), the run goes on and ferry-2 is not measured (see
 * natsServerNote()).
 */
export function ensureTools(log: (line: string) => void): void {
  const missing = Object.keys(PACKAGES).filter((cmd) => !onPath(cmd));
  const natsMissing = findNatsServer() === undefined;
  if (missing.length === 0 && !natsMissing) return;
  const pkgs = missing.map((m) => PACKAGES[m]!);
  if (process.getuid?.() !== 0) {
    if (missing.length > 0) {
      const all = natsMissing ? [...pkgs, NATS_PACKAGE] : pkgs;
      throw new Error(`missing ${missing.join(", ")}: install with "sudo apt-get install -y ${all.join(" ")}" and run again`);
    }
    log(`nats-server is missing: ferry-2 will not be measured (install with "sudo apt-get install -y ${NATS_PACKAGE}")`);
    return;
  }
  const apt = (args: string[]) =>
    execFileSync("apt-get", args, { stdio: "inherit", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
  log(`installing ${[...pkgs, ...(natsMissing ? [NATS_PACKAGE] : [])].join(", ")} from Debian...`);
  apt(["update", "-qq"]);
  if (pkgs.length > 0) {
    apt(["install", "-y", "-qq", ...pkgs]);
    // Debian starts the packaged nginx on install where it can; the benchmark runs its own.
    try {
      execFileSync("service", ["nginx", "stop"], { stdio: "ignore" });
    } catch {
      // no service manager here: nothing was started
    }
  }
  if (natsMissing) {
    try {
      apt(["install", "-y", "-qq", NATS_PACKAGE]);
      // Like nginx: a packaged service may have started; the benchmark runs its own server.
      try {
        execFileSync("service", ["nats-server", "stop"], { stdio: "ignore" });
      } catch {
        // no service manager here: nothing was started
      }
    } catch (e) {
      log(`installing nats-server failed (${(e as Error).message.split("\n")[0]}): ferry-2 will not be measured`);
    }
  }
}

/** Why ferry-2 cannot run on this machine, or undefined when it can. */
export function natsServerNote(): string | undefined {
  return findNatsServer() ? undefined : `not measured: nats-server is missing (apt-get install ${NATS_PACKAGE})`;
}

/** The path of the nats-server executable, on PATH or where Debian puts it. */
export function findNatsServer(): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(":").filter(Boolean), ...EXTRA_DIRS];
  for (const dir of dirs) {
    const file = join(dir, "nats-server");
    try {
      accessSync(file, constants.X_OK);
      if (statSync(file).isFile()) return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

export function onPath(cmd: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** First line a command prints about its version, on stdout or stderr, whatever its exit code (nginx -v, wrk --version). */
export function versionOf(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  return `${r.stdout ?? ""}${r.stderr ?? ""}`.trim().split("\n")[0] ?? "";
}

/** A port that was free a moment ago, for servers (nginx) that cannot report the port they got. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
