import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Proc, startProc } from "./proc.js";

/** A nats-server with JetStream, on ports it picked itself, in a temp dir of its own. */
export interface NatsServer {
  /** Client URL, for `ferry relay --nats`. */
  url: string;
  proc: Proc;
  /** Stops the server and removes its store. */
  stop(): Promise<void>;
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts `bin` with JetStream on 127.0.0.1 (client and monitoring ports -1: the server
 * picks free ones and writes them to its ports file) and resolves once JetStream is
 * enabled (/healthz?js-enabled-only=true answers 200).
 */
export async function startNatsServer(bin: string, timeoutMs = 15_000): Promise<NatsServer> {
  const dir = mkdtempSync(join(tmpdir(), "ferry-bench-nats-"));
  const proc = startProc("nats-server", bin, ["-js", "-sd", join(dir, "store"), "-a", "127.0.0.1", "-p", "-1", "-m", "-1", "--ports_file_dir", dir]);
  const stop = async () => {
    await proc.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const deadline = Date.now() + timeoutMs;
    const check = (what: string) => {
      if (proc.child.exitCode !== null || proc.child.signalCode !== null) throw new Error(`nats-server exited before ${what}`);
      if (Date.now() > deadline) throw new Error(`nats-server: no ${what} after ${timeoutMs / 1000} s`);
    };
    // `<executable>_<pid>.ports` appears once the listeners are bound; it is not written
    // atomically, so a file that does not parse yet is read again.
    let ports: { nats?: string[]; monitoring?: string[] } | undefined;
    while (!ports) {
      check("ports file");
      const file = readdirSync(dir).find((f) => f.endsWith(`_${proc.pid}.ports`));
      if (file) {
        try {
          const p = JSON.parse(readFileSync(join(dir, file), "utf8")) as { nats?: string[]; monitoring?: string[] };
          if (p.nats?.[0] && p.monitoring?.[0]) ports = p;
        } catch {
          // half written: read again
        }
      }
      if (!ports) await delay(10);
    }
    const url = ports.nats![0]!;
    const health = `${ports.monitoring![0]!.replace(/\/$/, "")}/healthz?js-enabled-only=true`;
    // Listening is not ready: JetStream may still be starting.
    for (;;) {
      check("JetStream");
      const ok = await fetch(health, { signal: AbortSignal.timeout(2_000) }).then(
        async (r) => (await r.arrayBuffer(), r.status === 200),
        () => false,
      );
      if (ok) break;
      await delay(20);
    }
    return { url, proc, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
