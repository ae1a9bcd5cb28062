import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import type { ScanRequest, ScanResult } from "./audit-scan.js";

/** A worker idle this long exits; the next query starts another (tens of ms). */
const IDLE_MS = 60_000;

interface Thread {
  run(req: ScanRequest): Promise<ScanResult>;
}

let thread: Thread | undefined;

/**
 * Runs an audit scan in a worker thread, so reading up to 16 MiB of audit
 * lines never holds up the event loop that serves every tenant's traffic.
 * One thread per process, started on the first query and stopped when idle;
 * it takes scans one at a time (the admin API bounds how many wait).
 */
export function scanInWorker(req: ScanRequest): Promise<ScanResult> {
  thread ??= startThread();
  return thread.run(req);
}

function startThread(): Thread {
  const worker = spawn();
  const pending = new Map<number, { resolve(r: ScanResult): void; reject(e: Error): void }>();
  let nextId = 0;
  let idle: NodeJS.Timeout | undefined;
  const settleAll = (err: Error) => {
    if (thread === self) thread = undefined;
    for (const p of pending.values()) p.reject(err);
    pending.clear();
    clearTimeout(idle);
  };
  worker.on("message", (msg: { id: number; result?: ScanResult; error?: string }) => {
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (msg.result) p.resolve(msg.result);
    else p.reject(new Error(`audit scan failed: ${msg.error}`));
    if (pending.size > 0) return;
    // Nothing waiting: the thread must not keep the process alive, and goes after a while.
    worker.unref();
    idle = setTimeout(() => {
      if (thread === self) thread = undefined;
      void worker.terminate();
    }, IDLE_MS);
    idle.unref();
  });
  worker.on("error", (err) => settleAll(new Error(`audit worker failed: ${err.message}`)));
  worker.on("exit", (code) => settleAll(new Error(`audit worker exited (${code})`)));
  worker.unref();
  const self: Thread = {
    run(req) {
      clearTimeout(idle);
      worker.ref();
      const id = nextId++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        worker.postMessage({ id, req });
      });
    },
  };
  return self;
}

/**
 * The built relay runs the thread's compiled .js. Run from the TypeScript
 * sources (vitest, tsx), this module is a .ts file and so is the thread's
 * entry: it is loaded through tsx, which is there wherever the sources run.
 */
function spawn(): Worker {
  const options = { resourceLimits: { maxOldGenerationSizeMb: 256 } };
  if (!import.meta.url.endsWith(".ts")) return new Worker(new URL("./audit-scan-thread.js", import.meta.url), options);
  const entry = new URL("./audit-scan-thread.ts", import.meta.url).href;
  const tsx = new URL(tsxEsmApi(), pathToFileURL(createRequire(import.meta.url).resolve("tsx/package.json"))).href;
  const boot = `import(${JSON.stringify(tsx)}).then((api) => api.tsImport(${JSON.stringify(entry)}, ${JSON.stringify(entry)}))`;
  return new Worker(boot, { ...options, eval: true });
}

/** tsx's ESM API entry, as its package exports name it. */
function tsxEsmApi(): string {
  const pkg = createRequire(import.meta.url)("tsx/package.json") as { exports: Record<string, { import: { default: string } }> };
  return pkg.exports["./esm/api"]!.import.default;
}
