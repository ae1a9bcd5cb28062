import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

export const ROOT = resolve(import.meta.dirname, "../..");
export const CLI = join(ROOT, "dist/clients/cli/main.js");
export const ADMIN_TOKEN = "test-admin-token-0123456789";

/** One JSON log line of a Ferry process. */
export type LogLine = Record<string, unknown> & { msg?: string; level?: number };

/**
 * A Ferry CLI process with its log lines collected, so tests can wait for a
 * line instead of sleeping.
 */
export class FerryProcess {
  readonly lines: LogLine[] = [];
  readonly stderr: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private waiters: Array<{ match(l: LogLine): boolean; resolve(l: LogLine): void }> = [];
  private stderrWaiters: Array<{ match: RegExp; resolve(line: string): void }> = [];

  constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on("line", (text) => {
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        line = { msg: text, raw: true };
      }
      this.lines.push(line);
      this.waiters = this.waiters.filter((w) => {
        if (!w.match(line)) return true;
        w.resolve(line);
        return false;
      });
    });
    createInterface({ input: child.stderr! }).on("line", (text) => {
      this.stderr.push(text);
      this.stderrWaiters = this.stderrWaiters.filter((w) => {
        if (!w.match.test(text)) return true;
        w.resolve(text);
        return false;
      });
    });
    this.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Resolves with the first log line (past or future) matching `match`; rejects if the process exits first. */
  waitFor(match: (l: LogLine) => boolean, what = "log line"): Promise<LogLine> {
    const past = this.lines.find(match);
    if (past) return Promise.resolve(past);
    return new Promise((resolve, reject) => {
      this.waiters.push({ match, resolve });
      void this.exited.then(({ code, signal }) =>
        reject(new Error(`process exited (${code ?? signal}) before ${what}; stderr:\n${this.stderr.join("\n")}`)),
      );
    });
  }

  /** Resolves with the first stderr line (past or future) matching `match`. */
  waitForStderr(match: RegExp): Promise<string> {
    const past = this.stderr.find((l) => match.test(l));
    if (past) return Promise.resolve(past);
    return new Promise((resolve, reject) => {
      this.stderrWaiters.push({ match, resolve });
      void this.exited.then(() => reject(new Error(`process exited before printing ${match}`)));
    });
  }

  /** Resolves once `count` lines with this message have been logged. */
  async waitForCount(msg: string, count: number): Promise<void> {
    for (;;) {
      const n = this.lines.filter((l) => l.msg === msg).length;
      if (n >= count) return;
      await this.waitFor((l) => l.msg === msg && this.lines.filter((x) => x.msg === msg).length >= count, `${count}x "${msg}"`);
    }
  }

  /** Sends a signal and waits for the exit. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }

  /** Peak resident memory (VmHWM) in bytes, from /proc. */
  peakRss(): number {
    return procStatus(this.pid, "VmHWM");
  }

  /** Forgets the peak, so the next `peakRss()` counts from now. */
  resetPeakRss(): void {
    writeFileSync(`/proc/${this.pid}/clear_refs`, "5");
  }

  rss(): number {
    return procStatus(this.pid, "VmRSS");
  }
}

/**
 * How far each process's resident memory rose above where it stood when `work` began (peak minus start).
 * Peaks are reset first, so what start-up or earlier tests left behind does not count: a process whose
 * idle size drifts by some MB from run to run still fails when it buffers a body.
 */
export async function rssGrowthDuring(processes: FerryProcess[], work: () => Promise<void>): Promise<number[]> {
  const started = processes.map((p) => {
    p.resetPeakRss();
    return { p, start: p.rss() };
  });
  await work();
  return started.map(({ p, start }) => p.peakRss() - start);
}

function procStatus(pid: number, field: string): number {
  const text = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text);
  return m ? Number(m[1]) * 1024 : 0;
}

/** Every child this worker started; killed when the worker exits, so a failed test leaves no process behind. */
const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

export function spawnFerry(args: string[], env: Record<string, string> = {}): FerryProcess {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: ROOT,
    env: { ...process.env, FERRY_LOG_FORMAT: "json", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  child.once("exit", () => children.delete(child));
  return new FerryProcess(child);
}

export function tempDir(prefix = "ferry-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface RelayProcess extends FerryProcess {
  url: string;
}

/** Starts `ferry relay` on a port (0 = any) and waits until it listens. */
export async function startRelayProcess(
  opts: { dataDir?: string; port?: number; args?: string[]; env?: Record<string, string> } = {},
): Promise<RelayProcess & { dataDir: string }> {
  const dataDir = opts.dataDir ?? tempDir();
  const proc = spawnFerry(
    ["relay", "--listen", `127.0.0.1:${opts.port ?? 0}`, "--data", dataDir, ...(opts.args ?? [])],
    { FERRY_ADMIN_TOKEN: ADMIN_TOKEN, ...opts.env },
  );
  const line = await proc.waitFor((l) => l.msg === "relay listening", "relay listening");
  return Object.assign(proc, { url: String(line.url), dataDir });
}

/** Starts `ferry connector`; call waitForCount("tunnel connected", n) to wait for tunnels. */
export function startConnectorProcess(
  relayUrls: string | string[],
  key: string,
  targets: Record<string, string>,
  opts: { args?: string[]; env?: Record<string, string> } = {},
): FerryProcess {
  const relays = (Array.isArray(relayUrls) ? relayUrls : [relayUrls]).flatMap((r) => ["--relay", r]);
  const targetArgs = Object.entries(targets).flatMap(([name, url]) => ["--target", `${name}=${url}`]);
  return spawnFerry(
    ["connector", ...relays, ...targetArgs, "--reconnect-min", "50ms", "--reconnect-max", "500ms", ...(opts.args ?? [])],
    // As the README says to: from the environment, never in the process list.
    { ...(key ? { FERRY_CONNECTOR_KEY: key } : {}), ...opts.env },
  );
}

/** Runs the CLI to completion and returns its output. */
export function runFerry(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}
