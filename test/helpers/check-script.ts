import { execFile } from "node:child_process";
import { cpSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { ROOT, tempDir } from "./processes.js";

const run = promisify(execFile);

/** A copy of `parts` of the repo outside git, to break on purpose. */
export function copyOfRepo(prefix: string, parts: readonly string[]): string {
  const dir = tempDir(prefix);
  for (const p of parts) cpSync(join(ROOT, p), join(dir, p), { recursive: true });
  return dir;
}

/** Runs scripts/`script` (a check CI runs) against the tree at `root`: its exit code and all it printed. */
export async function runCheck(script: string, root: string): Promise<{ code: number; out: string }> {
  try {
    const r = await run(process.execPath, [join(ROOT, "scripts", script), "--root", root]);
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, out: err.stdout + err.stderr };
  }
}
