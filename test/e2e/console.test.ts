import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { launchChromium } from "../helpers/browser.js";
import { request } from "../helpers/http.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { ADMIN_TOKEN, ROOT, tempDir } from "../helpers/processes.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";

// The web console in headless Chromium against a real relay, connector and target. Screenshots go to a
// temporary directory, or to docs/console/ with FERRY_UPDATE_SCREENSHOTS=1 (the ones docs/console.md shows).
const SHOTS = process.env.FERRY_UPDATE_SCREENSHOTS === "1" ? join(ROOT, "docs/console") : tempDir();
mkdirSync(SHOTS, { recursive: true });

let browser: Browser;
let relay: TestRelay;
let target: TestTarget;
const connectors: Connector[] = [];
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  browser = await launchChromium();
  target = await startTestTarget();
  relay = await startTestRelay();
});

afterAll(async () => {
  for (const c of contexts) await c.close();
  await browser?.close();
  for (const c of connectors) await c.stop();
  await relay?.close();
  await target?.close();
});

/** A fresh browser session (its own sessionStorage) signed in with `token`. */
async function signedIn(token: string, viewport = { width: 1280, height: 800 }): Promise<Page> {
  const context = await browser.newContext({ viewport });
  contexts.push(context);
  const page = await context.newPage();
  const problems: string[] = [];
  page.on("pageerror", (e) => problems.push(e.message));
  // A CSP violation is a console error: the page must need nothing the policy refuses.
  page.on("console", (m) => {
    if (m.type() === "error" && /Content Security Policy|Refused to/.test(m.text())) problems.push(m.text());
  });
  await page.goto(`${relay.url}/console/`);
  await page.getByLabel("Admin token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByTestId("role").waitFor();
  Object.assign(page, { problems });
  return page;
}

const problemsOf = (page: Page) => (page as unknown as { problems: string[] }).problems;

async function shot(page: Page, name: string): Promise<void> {
  const file = join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: false });
  // A PNG, and not an empty one.
  expect(readFileSync(file).subarray(1, 4).toString()).toBe("PNG");
}

async function go(page: Page, path: string): Promise<void> {
  await page.evaluate(`location.hash = ${JSON.stringify(path)}`);
  await page.getByRole("heading", { level: 1 }).waitFor();
}

describe("the web console", () => {
  it("signs in, creates a tenant and a key (shown once), and sees the connector come online without a reload", async () => {
    const page = await signedIn(ADMIN_TOKEN);
    expect(await page.getByTestId("role").textContent()).toBe("admin");
    // The token stays in this tab's session, nowhere else.
    expect(await page.evaluate("[sessionStorage.length, localStorage.length, document.cookie]")).toEqual([1, 0, ""]);

    await go(page, "#/tenants");
    await page.getByLabel("Name").fill("acme");
    await page.getByRole("button", { name: "Create tenant" }).click();
    await page.getByTestId("tenant-row").filter({ hasText: "acme" }).waitFor();

    await go(page, "#/keys?tenant=acme");
    await page.getByRole("button", { name: "Create key" }).click();
    const secret = (await page.getByTestId("secret").textContent()) ?? "";
    expect(secret).toMatch(/^fck_[a-z0-9]{16}_/);
    await page.getByRole("button", { name: "Done" }).click();
    expect(await page.getByTestId("secret").count()).toBe(0);
    expect(await page.content()).not.toContain(secret);

    await go(page, "#/connectors?tenant=acme");
    expect(await page.getByTestId("connector-row").count()).toBe(0);
    connectors.push(await startTestConnector(relay.url, secret, { app: target.url }));
    // The page polls: the row comes without a reload.
    await page.getByTestId("connector-row").first().waitFor({ timeout: 5_000 });
    expect(await page.getByTestId("connector-row").first().textContent()).toContain("online");
    await shot(page, "connectors");
    expect(problemsOf(page)).toEqual([]);
  });

  it("shows each request in Live traffic as it finishes", async () => {
    const page = await signedIn(ADMIN_TOKEN);
    await go(page, "#/traffic");
    await page.getByTestId("watch-state").filter({ hasText: "watching" }).waitFor();
    for (const path of ["/json", "/missing", "/echo"]) {
      expect((await request(`${relay.url}/relay/acme/app${path}`, { headers: { "x-request-id": `console${path.replace("/", "-")}` } })).status).toBeGreaterThan(0);
      // Pushed by the relay, not polled: it is there at once.
      await page.getByTestId("exchange-row").filter({ hasText: path }).first().waitFor({ timeout: 1_000 });
    }
    const first = page.getByTestId("exchange-row").first();
    expect(await first.textContent()).toContain("/echo");
    expect(await page.getByTestId("exchange-row").filter({ hasText: "/missing" }).first().textContent()).toContain("404");
    await shot(page, "traffic");
    expect(problemsOf(page)).toEqual([]);
  });

  it("captures a target with its secrets redacted, and replays a request", async () => {
    const page = await signedIn(ADMIN_TOKEN);
    await go(page, "#/traffic");
    const captures = page.getByRole("region", { name: "Captures" });
    await captures.getByLabel("Tenant").fill("acme");
    await captures.getByLabel("Target").fill("app");
    await captures.getByRole("button", { name: "Start capture" }).click();
    await page.getByTestId("capture-row").first().waitFor();
    const body = JSON.stringify({ hello: "console", password: "not-this" });
    await request(`${relay.url}/relay/acme/app/echo?api_key=k-123&view=full`, {
      method: "POST",
      headers: { authorization: "Bearer very-secret-token", cookie: "sid=cookie-secret", "content-type": "application/json" },
      body,
    });
    await request(`${relay.url}/relay/acme/app/json?page=1`);
    const captured = page.getByTestId("captured-row");
    await captured.filter({ hasText: "/echo" }).waitFor({ timeout: 5_000 });
    await captured.filter({ hasText: "/echo" }).getByRole("button", { name: "Inspect" }).click();
    const detail = page.getByTestId("exchange-detail");
    await detail.waitFor();
    const text = (await detail.textContent()) ?? "";
    expect(text).toContain("[redacted]");
    expect(text).toContain("api_key=%5Bredacted%5D&view=full");
    expect(text).not.toMatch(/very-secret-token|cookie-secret|k-123/);
    // The body as it came, but for the member named like a credential.
    expect(await page.getByTestId("request-body").textContent()).toBe(JSON.stringify({ hello: "console", password: "[redacted]" }));
    expect(text).not.toContain("not-this");
    await detail.evaluate("(el) => el.scrollIntoView()");
    await shot(page, "capture");

    // A body whose password was redacted cannot be replayed as it was: the relay says so.
    await detail.getByRole("checkbox").check();
    await detail.getByRole("button", { name: "Replay" }).click();
    await detail.getByRole("alert").filter({ hasText: "cannot be replayed as it was" }).waitFor();
    // Escape closes the dialog, as a keyboard user expects.
    await page.keyboard.press("Escape");
    await detail.waitFor({ state: "detached" });

    // A POST wants the explicit confirm before it is sent again.
    await request(`${relay.url}/relay/acme/app/echo`, { method: "POST", headers: { "x-request-id": "console-replay" }, body: "send me again" });
    const plain = captured.filter({ hasText: "/echo" }).filter({ hasNotText: "api_key" });
    await plain.waitFor({ timeout: 5_000 });
    await plain.getByRole("button", { name: "Inspect" }).click();
    const replay = detail.getByRole("button", { name: "Replay" });
    expect(await replay.isDisabled()).toBe(true);
    await detail.getByRole("checkbox").check();
    const seen = target.seen.length;
    await replay.click();
    await page.getByTestId("replay-result").waitFor({ timeout: 5_000 });
    expect(await page.getByTestId("replay-result").textContent()).toContain("200");
    expect(await page.getByTestId("replay-result").textContent()).toContain("send me again");
    expect(target.seen.length).toBe(seen + 1);
    await page.keyboard.press("Escape");
    await detail.waitFor({ state: "detached" });
    expect(problemsOf(page)).toEqual([]);
  });

  it("lists the sign-in rules of a tenant's policy and ends a rule's sessions", async () => {
    const login = { issuer: "https://login.example.com/acme", clientId: "ferry-app", clientSecretEnv: "FERRY_LOGIN_ACME_APP" };
    await relay.admin.setAccessPolicy({ tenant: "acme", policy: { rules: [{ name: "people", targets: ["app"], require: ["login"], login }] } });
    const page = await signedIn(ADMIN_TOKEN);
    await go(page, "#/access?tenant=acme");
    const row = page.getByTestId("login-row");
    await row.waitFor();
    expect(await row.textContent()).toContain("https://login.example.com/acme");
    expect(await row.locator("td").nth(4).textContent()).toBe("never");
    await row.getByRole("button", { name: "End sessions" }).click();
    await page.getByRole("dialog").getByRole("button", { name: "End sessions" }).click();
    await expect.poll(() => row.locator("td").nth(4).textContent()).not.toBe("never");
    const { policy } = await relay.admin.getAccessPolicy({ tenant: "acme" });
    expect(policy!.rules[0]!.login!.sessionsNotBefore).toBeDefined();
    await shot(page, "access-sign-in");
    await relay.admin.setAccessPolicy({ tenant: "acme", policy: {} });
    expect(problemsOf(page)).toEqual([]);
  });

  it("gives a viewer no write buttons, and the relay refuses a write from its session", async () => {
    const { secret } = await relay.admin.createToken({ role: "viewer", description: "console test" });
    const page = await signedIn(secret);
    expect(await page.getByTestId("role").textContent()).toBe("viewer");
    await go(page, "#/tenants");
    await page.getByTestId("tenant-row").first().waitFor();
    expect(await page.getByRole("button", { name: "Create tenant" }).count()).toBe(0);
    expect(await page.getByRole("button", { name: "Delete" }).count()).toBe(0);
    await go(page, "#/keys?tenant=acme");
    expect(await page.getByRole("button", { name: "Create key" }).count()).toBe(0);
    await go(page, "#/traffic");
    expect(await page.getByRole("button", { name: "Start capture" }).count()).toBe(0);
    // What the page does not offer, its session cannot do either.
    const refused = await page.evaluate(`(async () => {
      const res = await fetch("/ferry.admin.v1.AdminService/CreateTenant", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: "Bearer " + sessionStorage.getItem("ferry.adminToken") },
        body: JSON.stringify({ name: "from-viewer" }),
      });
      return { status: res.status, body: await res.json() };
    })()`);
    expect(refused).toMatchObject({ status: 403, body: { code: "permission_denied" } });
  });

  it("shows a tenant token its own tenant only", async () => {
    await relay.admin.createTenant({ name: "globex" });
    const { secret } = await relay.admin.createToken({ role: "tenant:globex" });
    const page = await signedIn(secret);
    const nav = page.getByRole("navigation", { name: "Pages" });
    expect(await nav.getByRole("link", { name: "Tenants" }).count()).toBe(0);
    expect(await nav.getByRole("link", { name: "Admin tokens" }).count()).toBe(0);
    await go(page, "#/keys");
    await page.getByText("Tenant: globex").waitFor();
    await go(page, "#/traffic");
    await page.getByTestId("watch-state").filter({ hasText: "watching" }).waitFor();
    await request(`${relay.url}/relay/acme/app/json`, { headers: { "x-request-id": "not-for-globex" } });
    await request(`${relay.url}/relay/globex/app/json`, { headers: { "x-request-id": "for-globex" } });
    // globex has no connector: Ferry answers, and the row is globex's own.
    await page.getByTestId("exchange-row").filter({ hasText: "globex" }).first().waitFor({ timeout: 2_000 });
    expect(await page.getByTestId("exchange-row").filter({ hasText: "acme" }).count()).toBe(0);
  });

  it("works in a phone-sized window, with the keyboard", async () => {
    const page = await signedIn(ADMIN_TOKEN, { width: 375, height: 740 });
    await go(page, "#/overview");
    await page.getByTestId("connectors-online").waitFor();
    // Nothing wider than the screen but the tables, which scroll inside themselves.
    expect(await page.evaluate("document.documentElement.scrollWidth")).toBeLessThanOrEqual(375);
    await shot(page, "phone");
    // Every page is a link the keyboard reaches.
    await page.keyboard.press("Tab");
    expect(await page.evaluate("document.activeElement?.tagName")).toBe("A");
    const wide = await signedIn(ADMIN_TOKEN);
    await go(wide, "#/overview");
    await wide.getByTestId("connectors-online").filter({ hasText: "1" }).waitFor();
    await shot(wide, "overview");
    expect(problemsOf(page)).toEqual([]);
  });
});
