import { randomBytes } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/**
 * Writes `text` to `file` whole or not at all: a reader sees the old file or the new one, never half of one, and
 * after a crash one of the two is there. A temporary file beside it, created with `mode` (so a secret is never in a
 * file others may read, whatever the umask), synced, renamed over the file, then the directory synced so the rename
 * holds. The temporary name is random and created exclusively: nothing planted there beforehand is written through.
 */
export async function writeFileAtomically(file: string, text: string, mode: number): Promise<void> {
  const tmp = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    const handle = await open(tmp, "wx", mode & 0o600);
    try {
      await handle.chmod(mode);
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {});
    throw err;
  }
  const dir = await open(dirname(file), "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
