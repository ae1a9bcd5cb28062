import { mkdtempSync, mkdirSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createAdminClient } from "../clients/admin/admin-client.js";
import { childrenOf, type Proc, portLine, startProc } from "./lib/proc.js";
import { freePort } from "./lib/tools.js";

export const ROOT = resolve(import.meta.dirname, "..");
const CLI = join(ROOT, "dist/clients/cli/main.js");
const ADMIN_TOKEN = "bench-admin-token-0123456789";

/** One way of reaching the target, ready to take load. */
export interface Setup {
  name: SetupName;
  /** Base URL: append "/1k", "/bytes?size=N", "/sink". */
  base: string;
  /** Processes whose CPU and memory the report shows (proxies, relay, connector). */
  watched: Array<{ role: string; pid: number }>;
  stop(): Promise<void>;
}

export type SetupName = "direct" | "nginx" | "node-proxy" | "ferry-1" | "ferry-2";
export const SETUPS: SetupName[] = ["direct", "nginx", "node-proxy", "ferry-1", "ferry-2"];

/** Setups that cannot run yet, with the reason the report prints instead of a number. */
export const NOT_YET: Partial<Record<SetupName, string>> = {
  "ferry-2": "not yet: needs the cluster (issue 5)",
};

/** The one target server every setup forwards to. */
export async function startTarget(): Promise<{ port: number; proc: Proc }> {
  const proc = startProc("target", process.execPath, [join(ROOT, "bench/target.mjs")]);
  return { port: await proc.waitLine(portLine), proc };
}

export async function startSetup(name: SetupName, targetPort: number): Promise<Setup> {
  switch (name) {
    case "direct":
      return { name, base: `http://127.0.0.1:${targetPort}`, watched: [], stop: async () => {} };
    case "node-proxy": {
      const proc = startProc("node-proxy", process.execPath, [join(ROOT, "bench/node-proxy.mjs"), String(targetPort)]);
      const port = await proc.waitLine(portLine);
      return { name, base: `http://127.0.0.1:${port}`, watched: [{ role: "node-proxy", pid: proc.pid }], stop: proc.stop };
    }
    case "nginx":
      return startNginx(targetPort);
    case "ferry-1":
      return startFerry(targetPort);
    default:
      throw new Error(`setup ${name} cannot run: ${NOT_YET[name] ?? "unknown"}`);
  }
}

/** Debian's nginx as a keep-alive reverse proxy, one worker (one core, like one Node process), in a temp prefix. */
async function startNginx(targetPort: number): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), "ferry-bench-nginx-"));
  for (const d of ["body", "proxy", "fastcgi", "uwsgi", "scgi"]) mkdirSync(join(dir, d));
  const port = await freePort();
  writeFileSync(
    join(dir, "nginx.conf"),
    `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  upstream target {
    server 127.0.0.1:${targetPort};
    keepalive 256;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://target;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      client_max_body_size 0;
      proxy_read_timeout 300s;
    }
  }
}
`,
  );
  const proc = startProc("nginx", "nginx", ["-p", dir, "-c", join(dir, "nginx.conf"), "-e", join(dir, "error.log"), "-g", "daemon off;"]);
  await waitForPort(port, proc);
  // The worker does the proxying; its CPU and memory count only once it exists.
  while (childrenOf(proc.pid).length === 0) await new Promise((r) => setImmediate(r));
  return { name: "nginx", base: `http://127.0.0.1:${port}`, watched: [{ role: "nginx", pid: proc.pid }], stop: proc.stop };
}

/** One relay node and one connector (default settings: two tunnels), tenant "bench", target "app". */
export async function startFerry(targetPort: number, extraConnectorArgs: string[] = []): Promise<Setup> {
  const relay = await startRelay();
  const admin = createAdminClient(relay.url, ADMIN_TOKEN);
  await admin.createTenant({ name: "bench" });
  const { secret } = await admin.createKey({ tenant: "bench" });
  const connector = startProc(
    "connector",
    process.execPath,
    [CLI, "connector", "--relay", relay.url, "--key", secret, "--target", `app=http://127.0.0.1:${targetPort}`,
      "--max-concurrent", "2048", "--log-level", "warn", ...extraConnectorArgs],
    { env: { ...process.env, FERRY_LOG_FORMAT: "json" } },
  );
  let connected = 0;
  const tunnels = Number(extraConnectorArgs[extraConnectorArgs.indexOf("--tunnels") + 1]) || 2;
  // Warn level hides "tunnel connected"; the relay's audit lines say when each tunnel is up.
  await relay.proc.waitLine((l) => (l.includes('"connector.connect"') && ++connected >= tunnels ? true : undefined));
  return {
    name: "ferry-1",
    base: `${relay.url}/relay/bench/app`,
    watched: [
      { role: "relay", pid: relay.proc.pid },
      { role: "connector", pid: connector.pid },
    ],
    stop: async () => {
      await connector.stop();
      await relay.proc.stop();
    },
  };
}

/** A relay on a port of its own, in a fresh data directory, logging at info (audit lines only at this volume). */
export async function startRelay(): Promise<{ url: string; proc: Proc; admin: ReturnType<typeof createAdminClient> }> {
  const dataDir = mkdtempSync(join(tmpdir(), "ferry-bench-relay-"));
  const proc = startProc("relay", process.execPath, [CLI, "relay", "--listen", "127.0.0.1:0", "--data", dataDir], {
    env: { ...process.env, FERRY_ADMIN_TOKEN: ADMIN_TOKEN, FERRY_LOG_FORMAT: "json" },
  });
  const url = await proc.waitLine((l) => (l.includes('"relay listening"') ? (JSON.parse(l) as { url: string }).url : undefined));
  return { url, proc, admin: createAdminClient(url, ADMIN_TOKEN) };
}

/** Resolves once something accepts connections on the port (nginx cannot tell us when it is ready). */
async function waitForPort(port: number, proc: Proc): Promise<void> {
  for (;;) {
    if (proc.child.exitCode !== null) throw new Error("nginx exited at start (see its error.log)");
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setImmediate(r));
  }
}
