import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { launchChromium } from "../helpers/browser.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";

// Finding 9: with path routing every tenant is on the relay's one origin. Tenant alpha's app sets a cookie for
// Path=/ and forbids referrers; tenant beta's page then tries to read alpha's answers, as a page of the same
// origin may, with fetch and with a frame. In a real Chromium.
const ALPHA_PAGE = `<!doctype html><html><head><title>loading</title></head><body><script>
fetch("data").then((r) => r.text()).then((t) => { document.title = "alpha read: " + t; }, (e) => { document.title = "alpha failed: " + e; });
</script></body></html>`;

const BETA_PAGE = `<!doctype html><html><head><title>loading</title></head><body><pre id="out"></pre><script>
(async () => {
  const out = { cookie: document.cookie };
  try {
    const r = await fetch("/relay/alpha/app/data");
    out.fetch = r.status + " " + (await r.text());
  } catch (e) {
    out.fetch = "error " + e;
  }
  const frame = document.createElement("iframe");
  const loaded = new Promise((resolve) => (frame.onload = resolve));
  frame.src = "/relay/alpha/app/data";
  document.body.append(frame);
  await loaded;
  try {
    const doc = frame.contentDocument;
    out.frame = doc ? doc.body.innerText + " | cookie: " + doc.cookie : "no access";
  } catch (e) {
    out.frame = "no access: " + e.name;
  }
  document.getElementById("out").textContent = JSON.stringify(out, null, 2);
  window.result = out;
  document.title = "beta done";
})();
</script></body></html>`;

interface App {
  server: Server;
  url: string;
  seen: Array<{ url: string; headers: IncomingHttpHeaders }>;
}

async function startApp(routes: Record<string, (res: import("node:http").ServerResponse) => void>): Promise<App> {
  const seen: App["seen"] = [];
  const server = createServer((req, res) => {
    seen.push({ url: req.url!, headers: req.headers });
    const route = routes[req.url!];
    if (route) route(res);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

let relay: TestRelay;
let alpha: App;
let beta: App;
let connectors: Connector[] = [];
let browser: Browser;

beforeAll(async () => {
  alpha = await startApp({
    "/": (res) =>
      res
        .writeHead(200, {
          "content-type": "text/html",
          // The app's own choices: a site-wide cookie, and no referrers (common hardening advice).
          "set-cookie": ["a_sid=alpha-cookie; Path=/", "a_pref=1; Domain=127.0.0.1; Path=/"],
          "referrer-policy": "no-referrer",
        })
        .end(ALPHA_PAGE),
    "/data": (res) => res.writeHead(200, { "content-type": "text/plain" }).end("alpha-secret"),
  });
  beta = await startApp({ "/": (res) => res.writeHead(200, { "content-type": "text/html" }).end(BETA_PAGE) });
  relay = await startTestRelay();
  connectors = [
    await startTestConnector(relay.url, await relay.tenantWithKey("alpha"), { app: alpha.url }, { tunnels: 1 }),
    await startTestConnector(relay.url, await relay.tenantWithKey("beta"), { app: beta.url }, { tunnels: 1 }),
  ];
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  for (const c of connectors) await c.stop();
  await relay?.close();
  for (const app of [alpha, beta]) {
    app?.server.closeAllConnections();
    await new Promise((resolve) => app?.server.close(resolve));
  }
});

describe("tenants on one origin (path routing)", () => {
  it("alpha's own page works; beta's page can neither read alpha's answers nor get alpha's cookies", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${relay.url}/relay/alpha/app/`);
    await page.waitForFunction('document.title !== "loading"');
    expect(await page.title()).toBe("alpha read: alpha-secret");
    // alpha's cookies went to alpha, scoped to its prefix.
    expect(alpha.seen.find((s) => s.url === "/data")?.headers.cookie).toBe("a_sid=alpha-cookie; a_pref=1");
    const cookies = await context.cookies();
    expect(cookies.map((c) => [c.name, c.path, c.domain])).toEqual([
      ["a_sid", "/relay/alpha/app/", "127.0.0.1"],
      ["a_pref", "/relay/alpha/app/", "127.0.0.1"],
    ]);

    await page.goto(`${relay.url}/relay/beta/app/`);
    await page.waitForFunction('document.title === "beta done"');
    const result = (await page.evaluate("window.result")) as { cookie: string; fetch: string; frame: string };
    await page.screenshot({ path: join(tmpdir(), "ferry-browser-isolation.png") });
    // beta's target never saw alpha's cookies, nor its own page's script.
    expect(beta.seen.find((s) => s.url === "/")?.headers.cookie).toBeUndefined();
    expect(result.cookie).toBe("");
    // The fetch is refused by the relay: it came from a beta page (its Referer) to alpha.
    expect(result.fetch).toMatch(/^403 .*cross_tenant_request/);
    expect(result.fetch).not.toContain("alpha-secret");
    // The frame shows no alpha answer, and its document is not beta's to read.
    expect(result.frame).not.toContain("alpha-secret");
    expect(result.frame).not.toContain("alpha-cookie");
    expect(alpha.seen.filter((s) => s.url === "/data")).toHaveLength(1);
    await context.close();
  });
});
