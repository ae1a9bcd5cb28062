import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { AdminService } from "../../gen/ferry/admin/v1/admin_service_pb.js";
import { credentials, Metadata } from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createAdminClient } from "../../clients/cli/admin-client.js";
import { grpcClientConstructor } from "../helpers/grpc-client.js";
import { ConnectRequestSchema, type ConnectResponse, TunnelService } from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";
import { startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { json, request } from "../helpers/http.js";
import { type FerryProcess, startConnectorProcess, startRelayProcess } from "../helpers/processes.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { until } from "../helpers/wait.js";

let relay: TestRelay;
let target: TestTarget;
const procs: FerryProcess[] = [];

beforeAll(async () => {
  relay = await startTestRelay();
  target = await startTestTarget();
});
afterEach(async () => {
  await Promise.all(procs.splice(0).map((p) => p.stop("SIGKILL")));
});
afterAll(async () => {
  await relay?.close();
  await target?.close();
});

function connector(key: string): FerryProcess {
  const p = startConnectorProcess(relay.url, key, { app: target.url }, { args: ["--tunnels", "1"] });
  procs.push(p);
  return p;
}

/** Audit events so far, newest first, through the admin API. */
async function audit(): Promise<Array<{ action: string; tenant: string; details?: Record<string, unknown> }>> {
  return (await relay.admin.listAuditEvents({ pageSize: 1000 })).events;
}

describe("connector keys", () => {
  it("refuses an unknown key with Unauthenticated and audits it", async () => {
    const c = connector("fck_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    const failed = await c.waitFor((l) => l.msg === "tunnel failed");
    expect(failed.err).toBe("connector key is not valid");
    expect(failed.level).toBe(50); // error: retrying soon will not help
    expect((await audit()).some((e) => e.action === "connector.refused" && e.details?.reason === "unknown")).toBe(true);
  });

  it("refuses a right key id with a wrong secret", async () => {
    const good = await relay.tenantWithKey("acme");
    const forged = `fck_${good.split("_")[1]}_${"B".repeat(43)}`; // the secret part may itself contain "_"
    const c = connector(forged);
    expect((await c.waitFor((l) => l.msg === "tunnel failed")).err).toBe("connector key is not valid");
  });

  it("revoking a key closes its live tunnels at once and keeps it out", async () => {
    const key = await relay.tenantWithKey("revokee");
    const c = connector(key);
    await c.waitForCount("tunnel connected", 1);
    expect((await request(`${relay.url}/relay/revokee/app/echo`, { method: "POST", body: "x" })).status).toBe(200);

    const { keys } = await relay.admin.listKeys({ tenant: "revokee" });
    await relay.admin.revokeKey({ tenant: "revokee", keyId: keys[0]!.keyId });
    const refused = await c.waitFor((l) => l.msg === "tunnel failed" && String(l.err).includes("revoked"));
    expect(refused.err).toBe("connector key was revoked");
    const res = await request(`${relay.url}/relay/revokee/app/echo`);
    expect(res.status).toBe(503);
    expect((await audit()).some((e) => e.action === "key.revoke" && e.tenant === "revokee")).toBe(true);
    expect((await relay.admin.listKeys({ tenant: "revokee" })).keys[0]!.revokeTime).toBeDefined();
  });

  it("deleting a tenant disconnects its connectors and its keys stop working", async () => {
    const key = await relay.tenantWithKey("doomed");
    const c = connector(key);
    await c.waitForCount("tunnel connected", 1);
    await relay.admin.deleteTenant({ name: "doomed" });
    await c.waitFor((l) => l.msg === "tunnel failed" && l.err === "connector key is not valid");
    expect((await request(`${relay.url}/relay/doomed/app/echo`)).status).toBe(404);
  });
});

describe("tunnel protocol", () => {
  const Client = grpcClientConstructor(TunnelService);

  type Call = import("@grpc/grpc-js").ClientDuplexStream<ReturnType<typeof create<typeof ConnectRequestSchema>>, ConnectResponse>;

  /** A raw tunnel call with grpc-js, for speaking the protocol wrongly on purpose. */
  function openTunnel(key: string) {
    const client = new Client(new URL(relay.url).host, credentials.createInsecure());
    const metadata = new Metadata();
    metadata.set("authorization", `Bearer ${key}`);
    const call = (client as unknown as { connect(m: Metadata): Call }).connect(metadata);
    const status = new Promise<{ code: number; details: string }>((resolve) => {
      call.on("error", (e: { code: number; details: string }) => resolve(e));
      call.on("end", () => resolve({ code: 0, details: "ended" }));
    });
    const welcome = new Promise<ConnectResponse>((resolve) => call.once("data", resolve));
    const send = (init: Parameters<typeof create<typeof ConnectRequestSchema>>[1]) =>
      new Promise<void>((resolve) => (call.write(create(ConnectRequestSchema, init)) ? resolve() : call.once("drain", resolve)));
    return { call, status, welcome, send, close: () => client.close() };
  }

  /** Opens a raw tunnel call, sends `first`, and returns the call's status. */
  async function rawTunnel(key: string, first: Parameters<typeof create<typeof ConnectRequestSchema>>[1]) {
    const t = openTunnel(key);
    t.call.on("data", () => {});
    await t.send(first);
    const result = await t.status;
    t.close();
    return result;
  }

  const hello = { message: { case: "hello" as const, value: { protocolVersion: 1, targets: [{ name: "app" }] } } };

  it("a key revoked while its tunnel waits for Hello is refused at Hello", async () => {
    const key = await relay.tenantWithKey("slowhello");
    const t = openTunnel(key);
    t.call.on("data", () => {});
    const { keys } = await relay.admin.listKeys({ tenant: "slowhello" });
    // The stream is open and authenticated; the key goes before Hello arrives.
    await relay.admin.revokeKey({ tenant: "slowhello", keyId: keys[0]!.keyId });
    await t.send(hello);
    expect(await t.status).toMatchObject({ code: Code.Unauthenticated, details: "connector key was revoked" });
    expect(relay.relay.registry.tunnels("slowhello")).toHaveLength(0);
    t.close();
  });

  it("a connector that floods pings without reading gets no pile of pongs", async () => {
    const key = await relay.tenantWithKey("flooder");
    const t = openTunnel(key);
    await t.send(hello);
    await t.welcome;
    const [tunnel] = relay.relay.registry.tunnels("flooder");
    t.call.pause(); // never read another message: anything the relay owes would pile up
    for (let i = 1; i <= 20_000; i++) await t.send({ message: { case: "ping", value: { nonce: BigInt(i) } } });
    // A GoAway after the pings: once the relay has seen it, it has handled every ping.
    await t.send({ message: { case: "goAway", value: { reason: "done flooding" } } });
    await until(() => tunnel!.draining);
    // At most two pongs per keepalive interval are owed, however many pings came.
    expect(tunnel!.outbox.bytes).toBeLessThan(4096);
    t.call.cancel();
    t.close();
  });

  it("answers an unsupported protocol version with FailedPrecondition saying what to upgrade", async () => {
    const key = await relay.tenantWithKey("proto");
    const r = await rawTunnel(key, { message: { case: "hello", value: { protocolVersion: 99, targets: [{ name: "app" }] } } });
    expect(r.code).toBe(Code.FailedPrecondition);
    expect(r.details).toMatch(/speaks tunnel protocol v99.*upgrade the relay/);
    const old = await rawTunnel(key, { message: { case: "hello", value: { protocolVersion: 0, targets: [{ name: "app" }] } } });
    expect(old.details).toMatch(/upgrade the connector/);
  });

  it("refuses a tunnel whose first message is not Hello, or whose Hello is invalid", async () => {
    const key = await relay.tenantWithKey("proto2");
    const notHello = await rawTunnel(key, { message: { case: "ping", value: { nonce: 1n } } });
    expect(notHello).toMatchObject({ code: Code.InvalidArgument, details: "the first tunnel message must be Hello" });
    const badTarget = await rawTunnel(key, { message: { case: "hello", value: { protocolVersion: 1, targets: [{ name: "Not A Label" }] } } });
    expect(badTarget).toMatchObject({ code: Code.InvalidArgument, details: 'target name "Not A Label" is not a DNS label' });
  });
});

describe("admin authentication", () => {
  it("refuses calls without a valid token and audits them", async () => {
    for (const token of ["", "wrong-token-wrong-token"]) {
      const err = await createAdminClient(relay.url, token).listTenants({}).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.Unauthenticated);
    }
    expect((await audit()).filter((e) => e.action === "admin.refused").length).toBeGreaterThanOrEqual(2);
  });

  it("speaks gRPC and gRPC-Web as well as Connect on the same port", async () => {
    const auth: Interceptor = (next) => (req) => {
      req.header.set("authorization", "Bearer test-admin-token-0123456789");
      return next(req);
    };
    for (const transport of [
      createGrpcTransport({ baseUrl: relay.url, interceptors: [auth] }),
      createGrpcWebTransport({ baseUrl: relay.url, httpVersion: "1.1", interceptors: [auth] }),
    ]) {
      const { tenants } = await createClient(AdminService, transport).listTenants({});
      expect(tenants.map((t) => t.name)).toContain("acme");
    }
  });

  it("answers plain curl-style JSON calls with the token", async () => {
    const res = await request(`${relay.url}/ferry.admin.v1.AdminService/ListTenants`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer test-admin-token-0123456789" },
      body: "{}",
    });
    expect(res.status).toBe(200);
    expect(json<{ tenants: Array<{ name: string }> }>(res).tenants.map((t) => t.name)).toContain("acme");
  });

  it("mints an admin token on first start, shows it once and stores only its hash", async () => {
    const first = await startRelayProcess({ env: { FERRY_ADMIN_TOKEN: "" } });
    procs.push(first);
    const tokenPattern = /(fat_[a-z0-9]{16}_[A-Za-z0-9_-]{43})/;
    const token = tokenPattern.exec(await first.waitForStderr(tokenPattern))?.[1];
    expect(token).toBeDefined();
    expect((await createAdminClient(first.url, token!).listTenants({})).tenants).toEqual([]);
    expect(readFileSync(join(first.dataDir, "state.json"), "utf8")).not.toContain(token!.slice(21)); // the secret after "fat_<id>_"
    expect(JSON.stringify(first.lines)).not.toContain(token!);
    expect(await first.stop()).toEqual({ code: 0, signal: null });

    const second = await startRelayProcess({ dataDir: first.dataDir, port: Number(new URL(first.url).port), env: { FERRY_ADMIN_TOKEN: "" } });
    procs.push(second);
    expect(second.stderr.join("\n")).not.toContain("fat_");
    expect((await createAdminClient(second.url, token!).listTenants({})).tenants).toEqual([]);
  });
});
