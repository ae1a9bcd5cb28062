import { createHash } from "node:crypto";
import { type FSWatcher, readFileSync, watch } from "node:fs";
import { dirname } from "node:path";
import { loadTlsMaterial, type TlsMaterial } from "./tls-files.js";

export interface CertReloadOptions {
  certFile: string;
  keyFile: string;
  /** The pair that is in use now (read at start). */
  current: TlsMaterial;
  /** Called with a new, valid pair; the caller switches the server to it. */
  apply(material: TlsMaterial): void;
  /** Called once per broken pair (the server keeps the old one). */
  onError(err: Error): void;
  /** Fallback check for file systems where fs.watch says nothing (network mounts, some containers). Default 60s. */
  pollMs?: number;
  /** Quiet time after a change before the files are read: renewals write several files. Default 500ms. */
  debounceMs?: number;
}

export interface CertReloader {
  /** Reads the files now; true when a new pair was applied. */
  check(): boolean;
  close(): void;
}

/**
 * Watches the certificate and key for replacement. The directories are
 * watched, not the files: certbot and Kubernetes secrets swap files by rename
 * or symlink, which a watch on the old inode never sees. A periodic read
 * backs the watch up. Files are compared by content, so touches and
 * unrelated files in the same directory cost one read and nothing else.
 */
export function watchCertFiles(opts: CertReloadOptions): CertReloader {
  let inUse = digest(opts.current.cert, opts.current.key);
  // The broken pair last reported, so a poll does not log the same error every minute.
  let reported = "";
  let timer: NodeJS.Timeout | undefined;

  const check = (): boolean => {
    let cert: Buffer;
    let key: Buffer;
    try {
      cert = readFileSync(opts.certFile);
      key = readFileSync(opts.keyFile);
    } catch (err) {
      report(`missing:${(err as NodeJS.ErrnoException).code}`, err as Error);
      return false;
    }
    const seen = digest(cert, key);
    if (seen === inUse || seen === reported) return false;
    try {
      const material = loadTlsMaterial(opts.certFile, opts.keyFile);
      // Read again inside loadTlsMaterial: hash what was applied, not what was compared.
      inUse = digest(material.cert, material.key);
      reported = "";
      opts.apply(material);
      return true;
    } catch (err) {
      report(seen, err as Error);
      return false;
    }
  };
  const report = (what: string, err: Error) => {
    if (what === reported) return;
    reported = what;
    opts.onError(err);
  };
  const soon = () => {
    clearTimeout(timer);
    timer = setTimeout(check, opts.debounceMs ?? 500);
    timer.unref();
  };

  const watchers: FSWatcher[] = [];
  for (const dir of new Set([dirname(opts.certFile), dirname(opts.keyFile)])) {
    try {
      const w = watch(dir, { persistent: false }, soon);
      // A directory that goes away (unmounted volume) leaves the poll to do the work.
      w.on("error", () => w.close());
      watchers.push(w);
    } catch {
      // Not watchable here: the poll covers it.
    }
  }
  const poll = setInterval(check, opts.pollMs ?? 60_000);
  poll.unref();

  return {
    check,
    close() {
      clearTimeout(timer);
      clearInterval(poll);
      for (const w of watchers) w.close();
    },
  };
}

function digest(cert: Buffer, key: Buffer): string {
  return createHash("sha256").update(cert).update("\0").update(key).digest("hex");
}
