import { execFileSync, spawnSync } from "node:child_process";
import { createServer } from "node:net";

/** Debian packages the benchmark needs, by the command that must exist. */
const PACKAGES: Record<string, string> = { nginx: "nginx", wrk: "wrk" };

/**
 * Makes sure nginx and wrk are installed: installs them from Debian when
 * running as root, otherwise stops with the command to run.
 */
export function ensureTools(log: (line: string) => void): void {
  const missing = Object.keys(PACKAGES).filter((cmd) => !onPath(cmd));
  if (missing.length === 0) return;
  const pkgs = missing.map((m) => PACKAGES[m]!);
  if (process.getuid?.() !== 0) {
    throw new Error(`missing ${missing.join(", ")}: install with "sudo apt-get install -y ${pkgs.join(" ")}" and run again`);
  }
  log(`installing ${pkgs.join(", ")} from Debian...`);
  execFileSync("apt-get", ["update", "-qq"], { stdio: "inherit" });
  execFileSync("apt-get", ["install", "-y", "-qq", ...pkgs], { stdio: "inherit", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
  // Debian starts the packaged nginx on install where it can; the benchmark runs its own.
  try {
    execFileSync("service", ["nginx", "stop"], { stdio: "ignore" });
  } catch {
    // no service manager here: nothing was started
  }
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
