import { type ChildProcess, execFile, spawn } from "node:child_process";
import { accessSync, constants, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

/**
 * Real nats-server processes for tests (Debian's nats-server 2.9.10): one server or a
 * JetStream cluster, on random ports, with stop/kill/restart on the same ports and store.
 */

/** Where Debian and hand installs put the binary; /usr/sbin is often not on a non-root PATH. */
const EXTRA_DIRS = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"];

function findNatsServer(): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(":").filter(Boolean), ...EXTRA_DIRS];
  for (const dir of dirs) {
    const file = join(dir, "nats-server");
    try {
      accessSync(file, constants.X_OK);
      if (statSync(file).isFile()) return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

let ensured: Promise<string> | undefined;

/**
 * The path of nats-server, installing the Debian package first when it is missing and we
 * are root (once per process: parallel callers share one apt-get run).
 */
export function ensureNatsServer(): Promise<string> {
  ensured ??= (async () => {
    const found = findNatsServer();
    if (found) return found;
    if (process.getuid?.() !== 0) throw new Error("nats-server is missing: apt-get install nats-server");
    try {
      await promisify(execFile)("sh", ["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server"], {
        maxBuffer: 16 * 1024 * 1024,
      });
    } catch (err) {
      throw new Error(`installing nats-server failed: ${(err as { stderr?: string }).stderr || String(err)}`);
    }
    const installed = findNatsServer();
    if (!installed) throw new Error("nats-server is missing after apt-get install nats-server");
    return installed;
  })();
  // A failed install is not cached: the next caller (or test file) tries again.
  ensured.catch(() => (ensured = undefined));
  return ensured;
}

/** Every server process and temp dir of this worker; a failing test must not leave them behind. */
const liveChildren = new Set<ChildProcess>();
const liveDirs = new Set<string>();
process.once("exit", () => {
  for (const child of liveChildren) child.kill("SIGKILL");
  for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
});

export interface NatsServerOptions {
  /** Enables JetStream with a store dir in the server's temp dir (default true). */
  jetstream?: boolean;
  /** Client credentials the server requires (`--user/--pass`). */
  user?: string;
  password?: string;
  /** Client token the server requires (`--auth`). */
  token?: string;
  /** `--server_name`; JetStream clustering needs a distinct one per server. */
  serverName?: string;
  /** Turns on the cluster listener (127.0.0.1, random port) with this `--cluster_name`. */
  clusterName?: string;
  /** Route URLs to solicit (`--routes`); needs clusterName. */
  routes?: string[];
  /** Appended to the command line as is. */
  args?: string[];
  /** How long start/restart may take before failing (default 15 s). */
  readyTimeoutMs?: number;
}

interface Ports {
  nats?: string[];
  monitoring?: string[];
  cluster?: string[];
}

function portOf(url: string | undefined, what: string): number {
  if (!url) throw new Error(`nats-server ports file has no ${what} URL`);
  return Number(new URL(url).port);
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** GETs a monitoring endpoint; undefined when the server does not answer (yet). */
async function monitor(url: string): Promise<{ status: number; body: string } | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    return { status: res.status, body: await res.text() };
  } catch {
    return undefined;
  }
}

/**
 * One nats-server. The first start picks random client, monitoring and (when clustered)
 * cluster ports; restart() reuses them and the store dir, so clients configured with
 * `url` reconnect to the same server with its JetStream data.
 */
export class NatsServer {
  /** Temp dir holding the store (`store/`) and the ports files; removed by close(). */
  readonly dir: string;
  readonly storeDir: string;
  /**
   * Routes passed on the next (re)start. startNatsCluster() rewrites them once the
   * cluster stands, so a restarted member routes to every other member.
   */
  routes: string[];
  /** Recent output lines (nats-server logs to stderr), for failure messages. */
  readonly log: string[] = [];

  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private ports: { client: number; monitor: number; cluster?: number } | undefined;

  constructor(
    private readonly bin: string,
    readonly options: NatsServerOptions = {},
  ) {
    if (options.routes?.length && !options.clusterName) throw new Error("nats-server routes need a clusterName");
    this.dir = mkdtempSync(join(tmpdir(), "ferry-nats-"));
    liveDirs.add(this.dir);
    this.storeDir = join(this.dir, "store");
    this.routes = [...(options.routes ?? [])];
  }

  get port(): number {
    return this.started().client;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** The route listener's port, when clustered. */
  get clusterPort(): number | undefined {
    return this.started().cluster;
  }

  /** Route URL other servers use to reach this one. */
  get clusterUrl(): string {
    const port = this.clusterPort;
    if (port === undefined) throw new Error("nats-server is not clustered");
    return `nats://127.0.0.1:${port}`;
  }

  /** Monitoring endpoint (`/healthz`, `/jsz`, `/varz`, ...). */
  get monitorUrl(): string {
    return `http://127.0.0.1:${this.started().monitor}`;
  }

  get pid(): number {
    if (!this.child?.pid) throw new Error("nats-server is not running");
    return this.child.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  get name(): string | undefined {
    return this.options.serverName;
  }

  private started() {
    if (!this.ports) throw new Error("nats-server was never started");
    return this.ports;
  }

  private args(): string[] {
    const o = this.options;
    const p = this.ports;
    // -1 lets the server pick a free port and report it in the ports file; restarts pin
    // the ports it got so that clients and routes find it again.
    const args = ["-a", "127.0.0.1", "-p", String(p?.client ?? -1), "-m", String(p?.monitor ?? -1), "--ports_file_dir", this.dir];
    if (o.jetstream ?? true) args.push("-js", "-sd", this.storeDir);
    if (o.serverName) args.push("--server_name", o.serverName);
    if (o.clusterName) {
      args.push("--cluster_name", o.clusterName, "--cluster", `nats://127.0.0.1:${p?.cluster ?? -1}`);
      if (this.routes.length) args.push("--routes", this.routes.join(","));
    }
    if (o.user !== undefined) args.push("--user", o.user, "--pass", o.password ?? "");
    if (o.token !== undefined) args.push("--auth", o.token);
    return [...args, ...(o.args ?? [])];
  }

  /** Starts the process and resolves once it listens and JetStream is enabled. */
  async start(): Promise<void> {
    if (this.running) throw new Error("nats-server is already running");
    const child = spawn(this.bin, this.args(), { stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    liveChildren.add(child);
    this.exited = new Promise((resolve) =>
      child.once("exit", () => {
        liveChildren.delete(child);
        resolve();
      }),
    );
    // Drain both pipes (a full pipe would block the server) and keep the tail for errors.
    const keep = (chunk: Buffer) => {
      this.log.push(...chunk.toString("utf8").split("\n").filter(Boolean));
      if (this.log.length > 300) this.log.splice(0, this.log.length - 300);
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    child.once("error", (err) => this.log.push(`spawn error: ${err.message}`));
    try {
      await this.waitReady(child);
    } catch (err) {
      if (this.running) {
        child.kill("SIGKILL");
        await this.exited;
      }
      throw err;
    }
  }

  private async waitReady(child: ChildProcess): Promise<void> {
    const deadline = Date.now() + (this.options.readyTimeoutMs ?? 15_000);
    const check = (what: string) => {
      if (child.exitCode !== null || child.signalCode !== null || !child.pid)
        throw new Error(`nats-server exited (${child.exitCode ?? child.signalCode}) before ${what}:\n${this.tail()}`);
      if (Date.now() > deadline) throw new Error(`nats-server: timed out waiting for ${what}:\n${this.tail()}`);
    };
    // The server writes `<executable>_<pid>.ports` once its listeners are bound (a SIGKILLed
    // earlier run leaves its own file behind, hence the pid). The write is not atomic: a
    // half-written file fails to parse and is read again.
    const suffix = `_${child.pid}.ports`;
    for (;;) {
      check("its ports file");
      const file = readdirSync(this.dir).find((f) => f.endsWith(suffix));
      if (file) {
        try {
          const ports = JSON.parse(readFileSync(join(this.dir, file), "utf8")) as Ports;
          this.ports = {
            client: portOf(ports.nats?.[0], "client"),
            monitor: portOf(ports.monitoring?.[0], "monitoring"),
            cluster: this.options.clusterName ? portOf(ports.cluster?.[0], "cluster") : undefined,
          };
          break;
        } catch {
          // partial write; read again
        }
      }
      await delay(10);
    }
    // Listening is not ready: JetStream may still be starting. js-enabled-only does not
    // wait for a cluster's meta leader (cluster.waitReady() does), so a lone cluster
    // member being restarted is "ready" here too.
    for (;;) {
      check("/healthz?js-enabled-only=true");
      const res = await monitor(`${this.monitorUrl}/healthz?js-enabled-only=true`);
      if (res?.status === 200) return;
      await delay(20);
    }
  }

  /**
   * Resolves once the full /healthz answers 200: in a cluster that means this server has a
   * JetStream meta leader and its streams and consumers are current.
   */
  async waitHealthy(timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    for (;;) {
      if (!this.running) throw new Error(`nats-server ${this.name ?? this.port} is not running`);
      const res = await monitor(`${this.monitorUrl}/healthz`);
      if (res?.status === 200) return;
      last = res?.body ?? "no answer";
      if (Date.now() > deadline) throw new Error(`nats-server ${this.name ?? this.port} not healthy: ${last}`);
      await delay(25);
    }
  }

  /** The monitoring endpoint /jsz, parsed (meta_cluster.leader and cluster_size among others). */
  async jsz(): Promise<{ meta_cluster?: { leader?: string; cluster_size?: number } } & Record<string, unknown>> {
    const res = await monitor(`${this.monitorUrl}/jsz`);
    if (res?.status !== 200) throw new Error(`GET /jsz failed: ${res ? res.status : "no answer"}`);
    return JSON.parse(res.body) as { meta_cluster?: { leader?: string; cluster_size?: number } };
  }

  /** Graceful shutdown (SIGTERM); waits for the exit. Store and ports are kept for restart(). */
  stop(): Promise<void> {
    return this.signal("SIGTERM");
  }

  /** Crash (SIGKILL); waits for the exit. Store and ports are kept for restart(). */
  kill(): Promise<void> {
    return this.signal("SIGKILL");
  }

  private async signal(sig: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    child.kill(sig);
    // A clean shutdown takes milliseconds; if it hangs, a stuck server must not hang the suite.
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await this.exited;
    clearTimeout(timer);
  }

  /** Stops the server if it runs, then starts it on the same client, monitoring and cluster ports with the same store and `routes`. */
  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** Stops the server and removes its temp dir (store included); the handle is done. */
  async close(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
    liveDirs.delete(this.dir);
  }

  private tail(): string {
    return this.log.slice(-30).join("\n");
  }
}

/** A started single nats-server (JetStream on by default) on random ports; close() it after the test. */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const server = new NatsServer(await ensureNatsServer(), options);
  try {
    await server.start();
  } catch (err) {
    await server.close();
    throw err;
  }
  return server;
}

export interface NatsCluster {
  /** n1..nN, in start order. */
  servers: NatsServer[];
  /** Client URLs of all members (the nats client takes the array as `servers`). */
  urls: string[];
  /** The same as a comma list, for settings that take one string. */
  url: string;
  /**
   * Resolves once every running member answers a full /healthz and sees a JetStream meta
   * leader in a meta group of the cluster's size.
   */
  waitReady(timeoutMs?: number): Promise<void>;
  /** Kills every member and removes their temp dirs. */
  stop(): Promise<void>;
}

/**
 * Route for the first member before any other exists. nats-server 2.9 refuses to start
 * JetStream in cluster mode without a configured route ("JetStream cluster requires
 * configured routes"), and the first member cannot know the others' random ports yet.
 * Nothing listens on port 1: the server logs one refused dial and keeps retrying quietly;
 * a restart replaces it with the real routes.
 */
const PLACEHOLDER_ROUTE = "nats://127.0.0.1:1";

/**
 * `size` (>= 2) JetStream servers n1..nN in cluster `ferry-test`, each with its own store
 * and random ports; resolves once the cluster has formed and has a meta leader.
 */
export async function startNatsCluster(
  size = 3,
  options: Omit<NatsServerOptions, "serverName" | "routes"> = {},
): Promise<NatsCluster> {
  if (size < 2) throw new RangeError("a nats cluster needs at least 2 servers");
  const bin = await ensureNatsServer();
  const clusterName = options.clusterName ?? "ferry-test";
  const make = (i: number, routes: string[]) => new NatsServer(bin, { ...options, clusterName, serverName: `n${i}`, routes });
  const servers: NatsServer[] = [];
  const stop = async () => {
    await Promise.all(servers.map((s) => s.close()));
  };
  try {
    const first = make(1, [PLACEHOLDER_ROUTE]);
    servers.push(first);
    await first.start();
    const rest = Array.from({ length: size - 1 }, (_, i) => make(i + 2, [first.clusterUrl]));
    servers.push(...rest);
    await Promise.all(rest.map((s) => s.start()));
    // From now on every member restarts with routes to all the others, so any one of them
    // (n1 included) can come back while another is down.
    for (const s of servers) s.routes = servers.filter((o) => o !== s).map((o) => o.clusterUrl);

    const waitReady = async (timeoutMs = 20_000) => {
      const deadline = Date.now() + timeoutMs;
      for (const s of servers.filter((x) => x.running)) {
        await s.waitHealthy(Math.max(0, deadline - Date.now()));
        for (;;) {
          const meta = (await s.jsz()).meta_cluster;
          if (meta?.leader && meta.cluster_size === size) break;
          if (Date.now() > deadline) throw new Error(`nats cluster: ${s.name} sees no meta leader of ${size}: ${JSON.stringify(meta)}`);
          await delay(25);
        }
      }
    };
    await waitReady();
    const urls = servers.map((s) => s.url);
    return { servers, urls, url: urls.join(","), waitReady, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
