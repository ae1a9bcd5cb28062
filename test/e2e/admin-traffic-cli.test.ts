import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAdminClient } from "../../clients/cli/admin-client.js";
import type { Connector } from "../../clients/connector/connector.js";
import { request } from "../helpers/http.js";
import { startTestConnector } from "../helpers/in-process.js";
import { ADMIN_TOKEN, type RelayProcess, runFerry, spawnFerry, startRelayProcess } from "../helpers/processes.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";

// `ferry admin traffic ...` against a real relay process: the live stream, captures and replays from a terminal.
let relay: RelayProcess;
let target: TestTarget;
let connector: Connector;
let env: Record<string, string>;

beforeAll(async () => {
  target = await startTestTarget();
  relay = await startRelayProcess();
  env = { FERRY_RELAY: relay.url, FERRY_TOKEN: ADMIN_TOKEN };
  const admin = createAdminClient(relay.url, ADMIN_TOKEN);
  await admin.createTenant({ name: "acme" });
  const { secret } = await admin.createKey({ tenant: "acme" });
  connector = await startTestConnector(relay.url, secret, { app: target.url, other: target.url });
});

afterAll(async () => {
  await connector?.stop();
  await relay?.stop();
  await target?.close();
});

const ferry = (...args: string[]) => runFerry(["admin", ...args], env);
const noStack = (stderr: string) => expect(stderr).not.toMatch(/Error|\n\s+at /);

describe("ferry admin traffic watch", () => {
  it("prints a JSON line per exchange that matches, and Ctrl-C ends it cleanly", async () => {
    const watch = spawnFerry(["admin", "traffic", "watch", "--tenant", "acme", "--status", "4xx", "--json"], env);
    await watch.waitForStderr(/^watching exchanges/);
    await request(`${relay.url}/relay/acme/app/json`, { headers: { "x-request-id": "cli-ok" } });
    await request(`${relay.url}/relay/acme/app/missing`, { headers: { "x-request-id": "cli-404" } });
    const line = await watch.waitFor((l) => l.requestId === "cli-404", "the 404's line");
    expect(line).toMatchObject({ tenant: "acme", target: "app", method: "GET", path: "/missing", status: 404 });
    // The 200 finished first: had the filter let it through, its line would be there already.
    expect(watch.lines.some((l) => l.requestId === "cli-ok")).toBe(false);
    expect(await watch.stop("SIGINT")).toEqual({ code: 0, signal: null });
    noStack(watch.stderr.join("\n"));
  });

  it("prints one human line per exchange of the --target it is given", async () => {
    const watch = spawnFerry(["admin", "traffic", "watch", "--target", "app"], env);
    await watch.waitForStderr(/^watching exchanges/);
    await request(`${relay.url}/relay/acme/other/json`);
    await request(`${relay.url}/relay/acme/app/json`);
    const line = await watch.waitFor((l) => l.raw === true && String(l.msg).includes("acme/app"), "a line");
    expect(String(line.msg)).toMatch(/^\d{4}-\d\d-\d\dT\S+Z {2}\S+ {2}acme\/app {2}GET {2}\/json {2}200 {2}\S+ {2}0B in {2}\d+B out {2}client:/);
    expect(watch.lines.some((l) => String(l.msg).includes("acme/other"))).toBe(false);
    expect(await watch.stop("SIGINT")).toEqual({ code: 0, signal: null });
  });

  it("ends quietly when its reader goes away (| head)", async () => {
    const watch = spawnFerry(["admin", "traffic", "watch", "--tenant", "acme", "--json"], env);
    await watch.waitForStderr(/^watching exchanges/);
    await request(`${relay.url}/relay/acme/app/json`, { headers: { "x-request-id": "cli-head" } });
    await watch.waitFor((l) => l.requestId === "cli-head", "the first line");
    watch.child.stdout!.destroy();
    let exited = false;
    void watch.exited.then(() => (exited = true));
    // Each exchange is one more write to the closed pipe; the first that fails ends the watch.
    while (!exited) await request(`${relay.url}/relay/acme/app/json`);
    expect(await watch.exited).toEqual({ code: 0, signal: null });
    noStack(watch.stderr.join("\n"));
  });

  it("exits 2 and says so when the relay ends the watch (no silent reconnect)", async () => {
    const other = await startRelayProcess();
    const watch = spawnFerry(["admin", "traffic", "watch"], { FERRY_RELAY: other.url, FERRY_TOKEN: ADMIN_TOKEN });
    await watch.waitForStderr(/^watching exchanges/);
    await other.stop("SIGTERM");
    expect(await watch.exited).toEqual({ code: 2, signal: null });
    expect(watch.stderr.at(-1)).toMatch(/^ferry: [a-z_]+: the watch ended: .* \(the relay stopped or the connection broke\)$/);
  });
});

describe("ferry admin traffic capture and replay", () => {
  it("captures, shows with credentials redacted, and replays (a GET as it is, a POST only with --confirm)", async () => {
    const started = await ferry("traffic", "capture", "start", "acme", "app", "--for", "5m", "--json");
    expect(started.code).toBe(0);
    const captureId = JSON.parse(started.stdout).captureId as string;
    // 0x9b is CSI to a terminal that takes 8-bit controls; HTTP lets it through as obs-text.
    await request(`${relay.url}/relay/acme/app/json?page=2`, { headers: { "x-note": "a\x9b31mb" } });
    await request(`${relay.url}/relay/acme/app/echo`, { method: "POST", headers: { authorization: "Bearer cli-secret" }, body: "again\nand again" });
    const listed = await ferry("traffic", "capture", "list");
    expect(listed.stdout).toMatch(new RegExp(`${captureId}\\s+acme\\s+app\\s+recording\\s+\\S+\\s+2\\s+0\\s+admin:bootstrap`));
    const shown = await ferry("traffic", "capture", "show", captureId);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain("> GET /json?page=2");
    expect(shown.stdout).toContain("> authorization: [redacted]");
    expect(shown.stdout).toContain("> x-note: a\\x9b31mb\n");
    expect(shown.stdout).toContain("> again\n> and again\n");
    expect(shown.stdout).toContain("< again\n< and again");
    expect(shown.stdout).not.toContain("cli-secret");
    const exchanges = JSON.parse((await ferry("traffic", "capture", "show", captureId, "--json")).stdout).exchanges as Array<{ summary: { exchangeId: string; method: string } }>;
    const idOf = (method: string) => exchanges.find((x) => x.summary.method === method)!.summary.exchangeId;

    const get = await ferry("traffic", "replay", captureId, idOf("GET"));
    expect(get.code).toBe(0);
    const [status, ...rest] = get.stdout.split("\n");
    expect(status).toBe("200");
    expect(rest).toContain("content-type: application/json");
    expect(get.stdout).toContain('"method":"GET"');

    const refused = await ferry("traffic", "replay", captureId, idOf("POST"));
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/failed_precondition: replaying a POST may repeat what it did/);
    const replayed = await ferry("traffic", "replay", captureId, idOf("POST"), "--confirm", "--json");
    expect(replayed.code).toBe(0);
    const answer = JSON.parse(replayed.stdout);
    expect(answer.summary).toMatchObject({ method: "POST", status: 200, principal: "admin:bootstrap" });
    expect(Buffer.from(answer.responseBody, "base64").toString()).toBe("again\nand again");
    // The two replays went through the capture's target too: it holds them.
    expect((await ferry("traffic", "capture", "stop", captureId)).stdout).toMatch(/^stopped capture .*: 4 exchanges kept/);
  });

  it("shows a binary body as its size and a cut one without a broken last character", async () => {
    const started = await ferry("traffic", "capture", "start", "acme", "other", "--body-bytes", "10");
    expect(started.code).toBe(0);
    const { nodeId } = JSON.parse((await ferry("whoami", "--json")).stdout);
    const [, captureId] = /^capture (\S+) records acme\/other until \S+Z \(node (\S+)\)$/.exec(started.stdout.trim()) ?? [];
    expect(started.stdout.trim()).toMatch(new RegExp(`\\(node ${nodeId}\\)$`));
    await request(`${relay.url}/relay/acme/other/echo`, { method: "POST", body: Buffer.from([0x1b, 0x5d, 0x30, 0x07]) });
    await request(`${relay.url}/relay/acme/other/echo`, { method: "POST", body: "aéééééé" });
    const shown = (await ferry("traffic", "capture", "show", captureId!)).stdout;
    expect(shown).toContain("> (4 bytes of binary)\n");
    expect(shown).toContain("> aéééé [truncated]\n");
    expect(shown).not.toContain("\x1b");
    await ferry("traffic", "capture", "stop", captureId!);
  });
});

describe("ferry admin traffic history, whoami, help and bad input", () => {
  it("history as a table and as JSON, whoami", async () => {
    const history = await ferry("traffic", "history", "--json");
    expect(JSON.parse(history.stdout).buckets).toHaveLength(90);
    const table = (await ferry("traffic", "history", "--tenant", "acme")).stdout.split("\n");
    expect(table[0]).toMatch(/^START\s+REQUESTS\s+ERRORS\s+P95$/);
    expect(table[1]).toMatch(/^\S+Z\s+[1-9]\d*\s+\d+\s+\d/);
    expect((await ferry("whoami")).stdout.trim()).toMatch(/^token bootstrap \(admin\), node \S+$/);
  });

  it("refuses bad input with the server's message (exit 2) or its own (exit 1)", async () => {
    const badStatus = await ferry("traffic", "watch", "--status", "teapot");
    expect(badStatus.code).toBe(2);
    expect(badStatus.stderr).toMatch(/^ferry: invalid_argument: status "teapot"/);
    noStack(badStatus.stderr);
    const tooLong = await ferry("traffic", "capture", "start", "acme", "app", "--for", "3h");
    expect(tooLong.code).toBe(2);
    expect(tooLong.stderr).toMatch(/at most 1 hour/);
    const tooBig = await ferry("traffic", "capture", "start", "acme", "app", "--body-bytes", "1MiB");
    expect(tooBig.code).toBe(2);
    expect(tooBig.stderr).toMatch(/invalid_argument: body_bytes must be at most 65536/);
    const soon = await ferry("traffic", "capture", "start", "acme", "app", "--for", "soon");
    expect(soon.code).toBe(1);
    expect(soon.stderr).toMatch(/"soon" is not a duration/);
    const nothing = await ferry("traffic", "capture", "show", "nope");
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toMatch(/^ferry: not_found: there is no capture "nope"/);
  });

  it("every command has --help with an example", async () => {
    const commands = [["traffic", "watch"], ["traffic", "history"], ["traffic", "capture", "start"], ["traffic", "capture", "stop"], ["traffic", "capture", "list"], ["traffic", "capture", "show"], ["traffic", "replay"], ["whoami"]];
    const helps = await Promise.all(commands.map((c) => ferry(...c, "--help")));
    for (const [i, h] of helps.entries()) {
      expect(h.code, commands[i]!.join(" ")).toBe(0);
      expect(h.stdout, commands[i]!.join(" ")).toMatch(new RegExp(`Examples?:\\n  ferry admin ${commands[i]!.join(" ")}`));
    }
  });
});
