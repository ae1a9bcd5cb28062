import { type ChildProcess, spawn, type SpawnOptions } from "node:child_process";
import { createWriteStream, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";

/** A process the benchmark started, with what we read from /proc about it. */
export interface Proc {
  name: string;
  child: ChildProcess;
  pid: number;
  /** Resolves with the first stdout line for which `match` returns a value. */
  waitLine<T>(match: (line: string) => T | undefined): Promise<T>;
  stop(): Promise<void>;
}

const started = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of started) c.kill("SIGKILL");
});

/** Spawns a process, keeps its last output lines for error messages, and kills it if the bench dies. */
export function startProc(name: string, cmd: string, args: string[], opts: SpawnOptions = {}): Proc {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts });
  started.add(child);
  const tail: string[] = [];
  const waiters: Array<(line: string) => boolean> = [];
  // FERRY_BENCH_OUTPUT_DIR: every line a process prints, in <dir>/<name>-<pid>.log (what --trace-gc and the like print).
  const dir = process.env.FERRY_BENCH_OUTPUT_DIR;
  if (dir) mkdirSync(dir, { recursive: true });
  const saved = dir ? createWriteStream(join(dir, `${name}-${child.pid}.log`)) : undefined;
  const keep = (line: string) => {
    saved?.write(`${line}\n`);
    tail.push(line);
    if (tail.length > 20) tail.shift();
  };
  createInterface({ input: child.stdout! }).on("line", (line) => {
    keep(line);
    for (let i = 0; i < waiters.length; i++) if (waiters[i]!(line)) waiters.splice(i--, 1);
  });
  createInterface({ input: child.stderr! }).on("line", keep);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  if (saved) child.once("close", () => saved.end());
  child.once("exit", () => started.delete(child));
  return {
    name,
    child,
    pid: child.pid!,
    waitLine<T>(match: (line: string) => T | undefined) {
      return new Promise<T>((resolve, reject) => {
        waiters.push((line) => {
          const v = match(line);
          if (v === undefined) return false;
          resolve(v);
          return true;
        });
        void exited.then(() => reject(new Error(`${name} exited before it was ready:\n${tail.join("\n")}`)));
      });
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Runs a command to completion and returns its stdout (rejects with stderr on failure). */
export function run(cmd: string, args: string[], opts: SpawnOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts });
    let out = "";
    let err = "";
    child.stdout!.on("data", (d) => (out += d));
    child.stderr!.on("data", (d) => (err += d));
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(" ")} failed (${code}): ${err || out}`))));
  });
}

/** Resident memory now, in bytes. */
export function rss(pid: number): number {
  return statusField(pid, "VmRSS");
}

/** RSS once it stops moving (allocation settles within a second or two after a burst). */
export async function settledRss(pid: number): Promise<number> {
  let last = rss(pid);
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 250));
    const now = rss(pid);
    if (Math.abs(now - last) < 256 * 1024) return now;
    last = now;
  }
  return last;
}

/** Peak resident memory since start or the last resetPeak(), in bytes. */
export function peakRss(pid: number): number {
  return statusField(pid, "VmHWM");
}

/** Resets the peak-RSS counter (Linux: "5" to clear_refs), so each scenario reports its own peak. */
export function resetPeak(pid: number): void {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
  } catch {
    // not permitted: the peak then covers the process's whole life, which the report says
  }
}

/** User + system CPU time used so far, in seconds. */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks / 100;
}

function statusField(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Direct child processes of `pid` (Linux /proc). */
export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** A JSON line like {"port": 1234} from a helper process. */
export function portLine(line: string): number | undefined {
  try {
    const v = JSON.parse(line) as { port?: number };
    return typeof v.port === "number" ? v.port : undefined;
  } catch {
    return undefined;
  }
}
