import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { freePort } from "../../bench/lib/tools.js";
import { tempDir } from "./processes.js";

const TINYPROXY = "/usr/bin/tinyproxy";

export interface Tinyproxy {
  /** http://[user:pass@]127.0.0.1:PORT */
  url: string;
  port: number;
  /** Its log lines so far (stderr, foreground mode). */
  readonly lines: string[];
  /** Destinations it opened connections to for CONNECT requests it accepted, e.g. "127.0.0.1:4433" (from its log). */
  connects(): string[];
  close(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/**
 * A real tinyproxy (HTTP CONNECT proxy) on 127.0.0.1, optionally with basic auth. Tinyproxy wants a fixed port in
 * its config, so the helper takes a free one from the kernel (bind port 0, close) and waits until it accepts.
 */
export async function startTinyproxy(opts: { user?: string; password?: string } = {}): Promise<Tinyproxy> {
  if (!existsSync(TINYPROXY)) {
    throw new Error(`${TINYPROXY} is missing: run scripts/ensure-test-deps.sh (apt-get install tinyproxy)`);
  }
  const port = await freePort();
  const dir = tempDir("ferry-tinyproxy-");
  const conf = join(dir, "tinyproxy.conf");
  writeFileSync(
    conf,
    [
      `Port ${port}`,
      "Listen 127.0.0.1",
      "Timeout 600",
      "MaxClients 100",
      "LogLevel Info",
      // No ConnectPort line: CONNECT to any port (the test relays are on random ports).
      ...(opts.user ? [`BasicAuth ${opts.user} ${opts.password ?? ""}`] : []),
      "",
    ].join("\n"),
  );
  const child = spawn(TINYPROXY, ["-d", "-c", conf], { stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  void exited.then(() => running.delete(child));
  const lines: string[] = [];
  let gone = false;
  void exited.then(() => (gone = true));
  // It logs this once it listens (LogLevel Info, foreground): no polling needed.
  await new Promise<void>((resolve, reject) => {
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on("line", (l) => {
        lines.push(l);
        if (l.includes("Accepting connections")) resolve();
      });
    }
    void exited.then(() => reject(new Error(`tinyproxy exited before listening:\n${lines.join("\n")}`)));
  });
  const auth = opts.user ? `${encodeURIComponent(opts.user)}:${encodeURIComponent(opts.password ?? "")}@` : "";
  return {
    url: `http://${auth}127.0.0.1:${port}`,
    port,
    lines,
    connects: () => lines.flatMap((l) => /opensock: opening connection to (\S+)$/.exec(l)?.[1] ?? []),
    async close() {
      if (!gone) child.kill("SIGTERM");
      await exited;
    },
  };
}
