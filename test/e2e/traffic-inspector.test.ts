import { toJson } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { IncomingHttpHeaders } from "node:http";
import { connect as http2Connect } from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AdminClient, createAdminClient } from "../../clients/cli/admin-client.js";
import type { Connector } from "../../clients/connector/connector.js";
import {
  type ExchangeSummary,
  ExchangeSummarySchema,
  GetCaptureResponseSchema,
  type WatchExchangesResponse,
} from "../../gen/ferry/admin/v1/admin_service_pb.js";
import { request } from "../helpers/http.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { ADMIN_TOKEN } from "../helpers/processes.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { eventually, until } from "../helpers/wait.js";

// The console's live view over the admin API: WatchExchanges, captures with redaction, replays, the history.
let relay: TestRelay;
let target: TestTarget;
let connectors: Connector[] = [];
const watches: AbortController[] = [];

beforeAll(async () => {
  target = await startTestTarget();
  relay = await startTestRelay();
  connectors = [
    await startTestConnector(relay.url, await relay.tenantWithKey("acme"), { app: target.url, other: target.url }),
    await startTestConnector(relay.url, await relay.tenantWithKey("globex"), { app: target.url }),
  ];
});

afterAll(async () => {
  for (const w of watches) w.abort();
  for (const c of connectors) await c.stop();
  await relay?.close();
  await target?.close();
});

/** A running WatchExchanges call: what it has received so far; resolves once the watch is in place. */
async function watch(admin: AdminClient, filter: { tenant?: string; target?: string; status?: string } = {}) {
  const abort = new AbortController();
  watches.push(abort);
  const received: WatchExchangesResponse[] = [];
  let failure: unknown;
  let ready!: () => void;
  const inPlace = new Promise<void>((resolve) => (ready = resolve));
  void (async () => {
    try {
      for await (const m of admin.watchExchanges(filter, { signal: abort.signal })) {
        received.push(m);
        ready();
      }
    } catch (err) {
      failure = err;
      ready();
    }
  })();
  await inPlace;
  return {
    received,
    get failure() {
      return failure;
    },
    exchanges: () => received.flatMap((m) => m.exchanges),
    stop: () => abort.abort(),
  };
}

async function tokenFor(role: string): Promise<AdminClient> {
  const { secret } = await relay.admin.createToken({ role });
  return createAdminClient(relay.url, secret);
}

describe("WatchExchanges", () => {
  it("streams each finished exchange as it happens, without its query", async () => {
    const w = await watch(relay.admin);
    expect(w.received[0]?.exchanges).toEqual([]);
    const reply = await request(`${relay.url}/relay/acme/app/json?token=hidden`, { headers: { "x-request-id": "watch-1" } });
    expect(reply.status).toBe(200);
    await until(() => w.exchanges().some((e) => e.requestId === "watch-1"));
    const seen = w.exchanges().find((e) => e.requestId === "watch-1")!;
    expect(seen).toMatchObject({ tenant: "acme", target: "app", method: "GET", path: "/json", status: 200, code: "", nodeId: relay.relay.nodeId });
    expect(seen.principal).toBe("client:127.0.0.1");
    expect(seen.clientAddress).toBe("127.0.0.1");
    expect(Number(seen.bytesOut)).toBe(reply.body.length);
    expect(JSON.stringify(toJson(ExchangeSummarySchema, seen))).not.toContain("hidden");
    w.stop();
  });

  it("filters by tenant, target and status", async () => {
    const notFound = await watch(relay.admin, { tenant: "acme", status: "4xx" });
    const other = await watch(relay.admin, { target: "other" });
    const failed = await watch(relay.admin, { status: "error" });
    await request(`${relay.url}/relay/acme/app/json`, { headers: { "x-request-id": "f-ok" } });
    await request(`${relay.url}/relay/acme/app/missing`, { headers: { "x-request-id": "f-404" } });
    await request(`${relay.url}/relay/globex/app/missing`, { headers: { "x-request-id": "f-globex-404" } });
    await request(`${relay.url}/relay/acme/other/json`, { headers: { "x-request-id": "f-other" } });
    // No connector serves "nobody": Ferry answers it itself (404 target_not_found), a 4xx and an error both.
    expect((await request(`${relay.url}/relay/acme/nobody/x`, { headers: { "x-request-id": "f-none" } })).status).toBe(404);
    await until(() => failed.exchanges().some((e) => e.requestId === "f-none"));
    const ids = (x: { exchanges(): ExchangeSummary[] }) => x.exchanges().map((e) => e.requestId).filter((id) => id.startsWith("f-"));
    expect(ids(notFound)).toEqual(["f-404", "f-none"]);
    expect(ids(other)).toEqual(["f-other"]);
    expect(ids(failed)).toEqual(["f-none"]);
    expect(failed.exchanges().find((e) => e.requestId === "f-none")!.code).toBe("target_not_found");
    for (const w of [notFound, other, failed]) w.stop();
  });

  it("shows a tenant token its own tenant only, and refuses it another", async () => {
    const acme = await tokenFor("tenant:acme");
    const w = await watch(acme);
    await request(`${relay.url}/relay/globex/app/json`, { headers: { "x-request-id": "t-globex" } });
    await request(`${relay.url}/relay/acme/app/json`, { headers: { "x-request-id": "t-acme" } });
    await until(() => w.exchanges().some((e) => e.requestId === "t-acme"));
    expect(w.exchanges().map((e) => e.tenant)).not.toContain("globex");
    w.stop();

    const refused = await watch(acme, { tenant: "globex" });
    expect(ConnectError.from(refused.failure).code).toBe(Code.PermissionDenied);
    const bad = await watch(relay.admin, { status: "teapot" });
    expect(ConnectError.from(bad.failure).code).toBe(Code.InvalidArgument);
  });

  it("drops for a watcher that stops reading, says how many, and holds nothing back", async () => {
    // A raw Connect streaming call over HTTP/2 whose response is not read while the traffic flows: its
    // stream's window fills, and the relay's writes wait.
    const body = Buffer.from(JSON.stringify({ tenant: "acme", target: "other" }));
    const envelope = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), body]);
    envelope.writeUInt32BE(body.length, 1);
    const session = http2Connect(relay.url);
    const res = session.request({
      ":method": "POST",
      ":path": "/ferry.admin.v1.AdminService/WatchExchanges",
      "content-type": "application/connect+json",
      authorization: `Bearer ${ADMIN_TOKEN}`,
    });
    res.end(envelope);
    const head = await new Promise<IncomingHttpHeaders>((resolve, reject) => res.once("response", resolve).once("error", reject));
    expect(head[":status"]).toBe(200);
    res.pause();
    // Long paths make each summary big: what a queue without a bound would hold shows (the target answers 404).
    const path = `/${"p".repeat(4000)}`;
    const total = 2000;
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < total) {
          const i = next++;
          expect((await request(`${relay.url}/relay/acme/other${path}`, { headers: { "x-request-id": `slow-${i}` } })).status).toBe(404);
        }
      }),
    );
    // Now read again: the queue's exchanges come, then the count of those that did not fit, then new ones.
    let text = "";
    res.setEncoding("latin1");
    res.on("data", (c: string) => (text += c));
    res.resume();
    await until(() => /"dropped":"[1-9]/.test(text));
    await request(`${relay.url}/relay/acme/other/json`, { headers: { "x-request-id": "slow-last" } });
    await until(() => text.includes('"slow-last"'));
    res.close();
    session.close();
    const arrived = [...text.matchAll(/"requestId":"slow-[^"]+"/g)].length;
    const dropped = [...text.matchAll(/"dropped":"(\d+)"/g)].reduce((n, m) => n + Number(m[1]), 0);
    expect(dropped).toBeGreaterThan(0);
    expect(arrived + dropped).toBe(total + 1);
    // What the relay kept for it is its queue (256) and the socket's buffers, not 2000 summaries of 4 KB.
    expect(arrived).toBeLessThan(total / 2);
  });
});

describe("captures", () => {
  it("keeps headers and the first bytes of the bodies of one target, with credentials redacted, and audits it", async () => {
    const { capture } = await relay.admin.startCapture({ tenant: "acme", target: "app", bodyBytes: 64 });
    expect(capture).toMatchObject({ tenant: "acme", target: "app", bodyBytes: 64, active: true, actor: "admin:bootstrap" });
    const secretKey = "fcl_0123456789abcdef_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0";
    await request(`${relay.url}/relay/acme/app/echo?api_key=k1&page=2`, {
      method: "POST",
      headers: { authorization: "Bearer s3cret-token", cookie: "session=abc", "x-note": `key ${secretKey}`, "x-request-id": "cap-1" },
      body: `hello ${secretKey} ${"x".repeat(200)}`,
    });
    await request(`${relay.url}/relay/acme/other/json`, { headers: { "x-request-id": "cap-other" } });
    const got = await relay.admin.getCapture({ captureId: capture!.captureId });
    expect(got.exchanges.map((e) => e.summary?.requestId)).toEqual(["cap-1"]);
    const e = got.exchanges[0]!;
    expect(e.summary?.captureId).toBe(capture!.captureId);
    expect(e.query).toBe("api_key=%5Bredacted%5D&page=2");
    const req = Object.fromEntries(e.requestHeaders.map((h) => [h.name, h.value]));
    expect(req.authorization).toBe("[redacted]");
    expect(req.cookie).toBe("[redacted]");
    expect(req["x-note"]).toBe("key [redacted]");
    expect(e.requestBody.length).toBeLessThanOrEqual(64);
    expect(Buffer.from(e.requestBody).toString()).toMatch(/^hello \[redacted\]/);
    expect(e.requestBodyTruncated).toBe(true);
    expect(Buffer.from(e.responseBody).toString()).toMatch(/^hello \[redacted\]/);
    expect(e.responseBodyTruncated).toBe(true);
    expect(Object.fromEntries(e.responseHeaders.map((h) => [h.name, h.value]))["x-method"]).toBe("POST");
    expect(JSON.stringify(toJson(GetCaptureResponseSchema, got))).not.toMatch(/s3cret-token|session=abc|c2VjcmV0/);

    const stopped = await relay.admin.stopCapture({ captureId: capture!.captureId });
    expect(stopped.capture?.active).toBe(false);
    await request(`${relay.url}/relay/acme/app/json`, { headers: { "x-request-id": "cap-after" } });
    expect((await relay.admin.getCapture({ captureId: capture!.captureId })).exchanges).toHaveLength(1);
    await eventually(async () => {
      const { events } = await relay.admin.listAuditEvents({ action: "capture." });
      return events.some((ev) => ev.action === "capture.start") && events.some((ev) => ev.action === "capture.stop");
    }, "capture.start and capture.stop in the audit log");
  });

  it("replays a captured request as the admin, and wants a confirm for a POST", async () => {
    const { capture } = await relay.admin.startCapture({ tenant: "acme", target: "app" });
    await request(`${relay.url}/relay/acme/app/json?x=1`, { headers: { "x-request-id": "rp-get", "x-custom": "kept", authorization: "Bearer gone" } });
    await request(`${relay.url}/relay/acme/app/echo`, { method: "POST", headers: { "x-request-id": "rp-post" }, body: "again" });
    const { exchanges } = await relay.admin.getCapture({ captureId: capture!.captureId });
    const get = exchanges.find((e) => e.summary?.requestId === "rp-get")!;
    const post = exchanges.find((e) => e.summary?.requestId === "rp-post")!;

    const seenBefore = target.seen.length;
    const replay = await relay.admin.replayExchange({ captureId: capture!.captureId, exchangeId: get.summary!.exchangeId });
    expect(replay.summary).toMatchObject({ tenant: "acme", target: "app", method: "GET", path: "/json", status: 200, principal: "admin:bootstrap" });
    const echoed = JSON.parse(Buffer.from(replay.responseBody).toString()) as { url: string; headers: Record<string, string> };
    expect(echoed.url).toBe("/json?x=1");
    expect(echoed.headers["x-custom"]).toBe("kept");
    // A redacted credential is not sent again, neither as itself nor as "[redacted]".
    expect(echoed.headers.authorization).toBeUndefined();
    expect(target.seen.length).toBe(seenBefore + 1);

    await expect(relay.admin.replayExchange({ captureId: capture!.captureId, exchangeId: post.summary!.exchangeId })).rejects.toMatchObject({
      code: Code.FailedPrecondition,
    });
    const again = await relay.admin.replayExchange({ captureId: capture!.captureId, exchangeId: post.summary!.exchangeId, confirm: true });
    expect(again.summary?.status).toBe(200);
    expect(Buffer.from(again.responseBody).toString()).toBe("again");
    await eventually(async () => {
      const { events } = await relay.admin.listAuditEvents({ action: "exchange.replay" });
      return events.length === 2;
    }, "two exchange.replay events");

    // A body whose credential the capture redacted is not sent with "[redacted]" in its place.
    await request(`${relay.url}/relay/acme/app/echo`, { method: "POST", headers: { "x-request-id": "rp-secret" }, body: '{"password":"hunter2"}' });
    const secret = (await relay.admin.getCapture({ captureId: capture!.captureId })).exchanges.find((e) => e.summary?.requestId === "rp-secret")!;
    await expect(relay.admin.replayExchange({ captureId: capture!.captureId, exchangeId: secret.summary!.exchangeId, confirm: true })).rejects.toMatchObject({
      code: Code.FailedPrecondition,
      rawMessage: "the capture redacted a credential in the request body: it cannot be replayed as it was",
    });

    // Replays are for admins: a viewer and a tenant token are refused.
    for (const role of ["viewer", "tenant:acme"]) {
      await expect((await tokenFor(role)).replayExchange({ captureId: capture!.captureId, exchangeId: get.summary!.exchangeId })).rejects.toMatchObject({
        code: Code.PermissionDenied,
      });
    }
    await relay.admin.stopCapture({ captureId: capture!.captureId });
  });

  it("keeps tenants apart and viewers read-only", async () => {
    const { capture } = await relay.admin.startCapture({ tenant: "globex", target: "app" });
    const acme = await tokenFor("tenant:acme");
    await expect(acme.getCapture({ captureId: capture!.captureId })).rejects.toMatchObject({ code: Code.NotFound });
    await expect(acme.startCapture({ tenant: "globex", target: "app" })).rejects.toMatchObject({ code: Code.PermissionDenied });
    expect((await acme.listCaptures({})).captures.map((c) => c.tenant)).not.toContain("globex");
    const viewer = await tokenFor("viewer");
    await expect(viewer.startCapture({ tenant: "acme", target: "app" })).rejects.toMatchObject({ code: Code.PermissionDenied });
    expect((await viewer.getCapture({ captureId: capture!.captureId })).capture?.tenant).toBe("globex");
    await relay.admin.stopCapture({ captureId: capture!.captureId });
  });

  it("bounds captures: per tenant, duration and body size", async () => {
    await expect(relay.admin.startCapture({ tenant: "acme", target: "app", bodyBytes: 1 << 20 })).rejects.toMatchObject({ code: Code.InvalidArgument });
    await expect(relay.admin.startCapture({ tenant: "acme", target: "app", duration: { seconds: 7200n, nanos: 0 } })).rejects.toMatchObject({
      code: Code.InvalidArgument,
    });
    const started: string[] = [];
    expect((await relay.admin.listCaptures({ tenant: "acme" })).captures.filter((c) => c.active)).toEqual([]);
    for (const t of ["app", "other"]) started.push((await relay.admin.startCapture({ tenant: "acme", target: t })).capture!.captureId);
    // One capture per target at a time, two per tenant.
    await expect(relay.admin.startCapture({ tenant: "acme", target: "app" })).rejects.toMatchObject({ code: Code.AlreadyExists });
    await expect(relay.admin.startCapture({ tenant: "acme", target: "third" })).rejects.toMatchObject({ code: Code.ResourceExhausted });
    for (const id of started) await relay.admin.stopCapture({ captureId: id });
  });
});

describe("GetTrafficHistory and GetCaller", () => {
  it("returns the last 15 minutes in 10-second buckets, the current one counting what just happened", async () => {
    const before = await relay.admin.getTrafficHistory({ tenant: "globex" });
    await request(`${relay.url}/relay/globex/app/json`);
    const after = await relay.admin.getTrafficHistory({ tenant: "globex" });
    expect(after.buckets).toHaveLength(90);
    expect(Number(after.bucketWidth?.seconds)).toBe(10);
    const sum = (h: typeof after) => h.buckets.reduce((n, b) => n + Number(b.requests), 0);
    expect(sum(after)).toBeGreaterThan(sum(before));
    expect(after.nodeId).toBe(relay.relay.nodeId);
  });

  it("tells a token its role", async () => {
    const viewer = await tokenFor("viewer");
    expect((await viewer.getCaller({})).token?.role).toBe("viewer");
    expect((await relay.admin.getCaller({})).token).toMatchObject({ tokenId: "bootstrap", role: "admin" });
  });
});
