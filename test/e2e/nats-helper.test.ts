import { connect, ErrorCode, Events, type ConnectionOptions, type NatsConnection } from "nats";
import { afterEach, describe, expect, it } from "vitest";
import { type NatsServer, startNatsCluster, startNatsServer } from "../helpers/nats-server.js";

// The nats-server helper against the real nats client: JetStream KV, restarts on the same
// port, auth, and a 3-server cluster that survives losing a member.
const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

function track<S extends { close(): Promise<void> } | { stop(): Promise<void> }>(s: S): S {
  cleanup.push(() => ("close" in s ? s.close() : s.stop()));
  return s;
}

/** Clients that keep reconnecting quickly, as a relay would. */
async function client(servers: string | string[], extra: ConnectionOptions = {}): Promise<NatsConnection> {
  const nc = await connect({ servers, maxReconnectAttempts: -1, reconnectTimeWait: 100, ...extra });
  cleanup.push(() => nc.close());
  return nc;
}

/** Resolves on the connection's next status event of `type` (subscribes at once). */
async function nextStatus(nc: NatsConnection, type: Events): Promise<void> {
  for await (const status of nc.status()) if (status.type === type) return;
}

/**
 * Retries `fn` every ~100 ms until it succeeds: JetStream requests made while a leader is
 * being elected fail or time out rather than wait.
 */
async function retry<T>(fn: () => Promise<T>, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${what}: still failing after ${timeoutMs} ms: ${String(err)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

describe("nats-server helper", () => {
  it("serves JetStream KV, and a restart or crash on the same port keeps the data and lets clients reconnect", async () => {
    const server = track(await startNatsServer());
    const nc = await client(server.url);
    const kv = await nc.jetstream().views.kv("single");
    await kv.put("greeting", "hello");
    expect((await kv.get("greeting"))?.string()).toBe("hello");

    const port = server.port;
    const firstPid = server.pid;
    let reconnected = nextStatus(nc, Events.Reconnect);
    await server.restart();
    expect(server.port).toBe(port);
    expect(server.pid).not.toBe(firstPid);
    await reconnected;
    expect((await kv.get("greeting"))?.string()).toBe("hello");

    // A crash: the acknowledged write is in the store files, which the restart reopens.
    await kv.put("greeting", "again");
    reconnected = nextStatus(nc, Events.Reconnect);
    await server.kill();
    expect(server.running).toBe(false);
    await server.restart();
    await reconnected;
    expect(server.port).toBe(port);
    expect((await kv.get("greeting"))?.string()).toBe("again");
  });

  it("requires the configured user/password or token", async () => {
    const server = track(await startNatsServer({ user: "ferry", password: "s3cret" }));
    await expect(connect({ servers: server.url })).rejects.toMatchObject({ code: ErrorCode.AuthorizationViolation });
    await expect(connect({ servers: server.url, user: "ferry", pass: "wrong" })).rejects.toMatchObject({
      code: ErrorCode.AuthorizationViolation,
    });
    const nc = await client(server.url, { user: "ferry", pass: "s3cret" });
    await nc.flush();

    const tokenServer = track(await startNatsServer({ token: "t0ken", jetstream: false }));
    await expect(connect({ servers: tokenServer.url })).rejects.toMatchObject({ code: ErrorCode.AuthorizationViolation });
    const tc = await client(tokenServer.url, { token: "t0ken" });
    await tc.flush();
  });

  it("a 3-server cluster replicates KV and survives losing the bucket's leader", async () => {
    const cluster = track(await startNatsCluster(3));
    const [n1, , n3] = cluster.servers as [NatsServer, NatsServer, NatsServer];
    expect(cluster.servers.map((s) => s.name)).toEqual(["n1", "n2", "n3"]);
    expect(new Set(cluster.servers.map((s) => s.clusterPort)).size).toBe(3);

    const nc1 = await client(n1.url);
    const nc3 = await client(n3.url);
    const kv1 = await retry(() => nc1.jetstream({ timeout: 1_000 }).views.kv("shared", { replicas: 3 }), "create R3 bucket");
    await kv1.put("k", "from n1");
    const kv3 = await retry(() => nc3.jetstream({ timeout: 1_000 }).views.kv("shared", { bindOnly: true }), "bind on n3");
    // Reads are direct gets, served by any replica: a follower may trail the put briefly.
    await retry(async () => expect((await kv3.get("k"))?.string()).toBe("from n1"), "read on n3");

    // Kill the stream's leader, so the remaining two must elect a new one.
    const jsm = await nc1.jetstreamManager({ timeout: 1_000 });
    const info = await retry(() => jsm.streams.info("KV_shared"), "stream info");
    expect(info.config.num_replicas).toBe(3);
    const victim = cluster.servers.find((s) => s.name === info.cluster?.leader);
    if (!victim) throw new Error(`no stream leader in ${JSON.stringify(info.cluster)}`);
    await victim.kill();

    const alive = cluster.servers.filter((s) => s.running);
    expect(alive).toHaveLength(2);
    const nc = await client(alive.map((s) => s.url));
    const kv = await retry(() => nc.jetstream({ timeout: 1_000 }).views.kv("shared", { bindOnly: true }), "bind after kill");
    await retry(() => kv.put("k2", "after the kill"), "put after losing the leader");
    await retry(async () => expect((await kv.get("k"))?.string()).toBe("from n1"), "read after losing the leader");

    // The victim comes back on its ports with routes to the others and catches up.
    await victim.restart();
    await cluster.waitReady();
    const back = await client(victim.url);
    const kvBack = await retry(() => back.jetstream({ timeout: 1_000 }).views.kv("shared", { bindOnly: true }), "bind on the restarted server");
    await retry(async () => expect((await kvBack.get("k2"))?.string()).toBe("after the kill"), "read on the restarted server");
  });
});
