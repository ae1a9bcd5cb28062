import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { bundleScript, launchChromium, type PageServer, servePage } from "../helpers/browser.js";
import { type EchoTarget, EXPOSED_HEADER, HIDDEN_HEADER, startEchoTarget } from "../fixtures/browser/echo-target.js";
import type { EchoPage } from "../fixtures/browser/echo-page.js";

// A real browser calling an on-prem Connect service through the relay: the page comes from one
// origin, the relay is another, so every call is a cross-origin fetch the connector's CORS policy
// must allow. "allowed" is listed in the target's allowedOrigins, "stranger" is not.
let browser: Browser;
let allowed: PageServer;
let stranger: PageServer;
let target: EchoTarget;
let relay: TestRelay;
let connector: Connector;
let baseUrl: string;
let page: Page;

beforeAll(async () => {
  browser = await launchChromium();
  const script = await bundleScript(fileURLToPath(new URL("../fixtures/browser/echo-page.ts", import.meta.url)));
  allowed = await servePage(script);
  stranger = await servePage(script);
  target = await startEchoTarget();
  relay = await startTestRelay();
  const key = await relay.tenantWithKey("acme");
  connector = await startTestConnector(relay.url, key, {
    api: {
      url: target.url,
      cors: { allowedOrigins: [allowed.origin], exposedHeaders: ["grpc-status", "grpc-message", "grpc-status-details-bin", EXPOSED_HEADER] },
    },
  });
  baseUrl = `${relay.url}/relay/acme/api`;
  page = await openPage(allowed);
});

afterAll(async () => {
  await browser?.close();
  await connector?.stop();
  await relay?.close();
  await Promise.all([target?.close(), allowed?.close(), stranger?.close()]);
});

async function openPage(server: PageServer): Promise<Page> {
  const p = await browser.newPage();
  await p.goto(server.url);
  return p;
}

/** globalThis.echoPage of a page (the bundled fixture). */
const api = (p: Page) => ({
  echo: (...args: Parameters<EchoPage["echo"]>) => p.evaluate((a) => (globalThis as unknown as { echoPage: EchoPage }).echoPage.echo(...a), args),
  serverStream: (...args: Parameters<EchoPage["serverStream"]>) =>
    p.evaluate((a) => (globalThis as unknown as { echoPage: EchoPage }).echoPage.serverStream(...a), args),
});

describe("a browser on an allowed origin", () => {
  it.each([
    ["connect", "application/json"],
    ["grpc-web", "application/grpc-web+proto"],
  ] as const)("calls Echo over %s", async (protocol, contentType) => {
    const before = target.seen.length;
    const result = await api(page).echo(protocol, baseUrl, { message: `hello over ${protocol}` });
    expect(result).toEqual({ ok: true, value: { message: `hello over ${protocol}`, headers: {} } });
    // The call reached the target in that protocol, and no preflight ever did (the connector answers them).
    expect(target.seen.slice(before)).toEqual([{ method: "POST", path: "/ferry.testing.v1.EchoService/Echo", contentType }]);
    expect(target.seen.filter((c) => c.method === "OPTIONS")).toEqual([]);
  });

  it.each(["connect", "grpc-web"] as const)("receives a server stream over %s, every message in order", async (protocol) => {
    const result = await api(page).serverStream(protocol, baseUrl, { message: "tick", count: 5 });
    expect(result).toEqual({ ok: true, value: ["0:tick", "1:tick", "2:tick", "3:tick", "4:tick"] });
  });

  it.each(["connect", "grpc-web"] as const)("gets the target's error code and message over %s", async (protocol) => {
    const result = await api(page).echo(protocol, baseUrl, { message: "x", failCode: 7, failMessage: "not for you" });
    expect(result).toEqual({ ok: false, code: "PermissionDenied", message: "not for you" });
  });

  it("reads a response header the policy exposes, and not one it does not", async () => {
    const result = await api(page).echo("connect", baseUrl, { message: "peek" }, [EXPOSED_HEADER, HIDDEN_HEADER, "x-request-id"]);
    // x-request-id is the relay's; this policy's exposedHeaders leave it out.
    expect(result).toEqual({ ok: true, value: { message: "peek", headers: { [EXPOSED_HEADER]: "echoed peek", [HIDDEN_HEADER]: null, "x-request-id": null } } });
  });
});

describe("a browser on an origin not allowed", () => {
  it("is blocked by CORS, and the call never reaches the target", async () => {
    const p = await openPage(stranger);
    try {
      const before = target.seen.length;
      // Chromium reports the block on the console; the script only sees a failed fetch.
      const blocked = p.waitForEvent("console", { predicate: (m) => m.text().includes("blocked by CORS policy"), timeout: 10_000 });
      const result = await api(p).echo("connect", baseUrl, { message: "let me in" });
      expect(result).toMatchObject({ ok: false, code: "Unknown" });
      expect((await blocked).text()).toContain(`from origin '${stranger.origin}' has been blocked by CORS policy`);
      expect(target.seen.slice(before)).toEqual([]);
    } finally {
      await p.close();
    }
  });
});
