import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { fromJson } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";
import type { Connector } from "../../clients/connector/connector.js";
import { AccessPolicySchema } from "../../gen/ferry/access/v1/access_policy_pb.js";
import { createSecretBox } from "../../services/auth/secret-box.js";
import { sealSession } from "../../services/access/login-session.js";
import { launchChromium } from "../helpers/browser.js";
import { issueCert, makeTestPki } from "../helpers/certs.js";
import { request } from "../helpers/http.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { type NatsServer, startNatsServer } from "../helpers/nats-server.js";
import { signIn, startOidcProvider, type TestOidcProvider } from "../helpers/oidc-provider.js";
import { ADMIN_TOKEN, ROOT, runFerry, tempDir } from "../helpers/processes.js";
import { eventually } from "../helpers/wait.js";

// Sign-in at the relay, end to end: a real OpenID provider (oidc-provider), a real relay and connector, a real app
// whose page calls fetch and opens a WebSocket, and Chromium clicking through. The steps of the first describe
// build on each other (one browser session).

const CLIENT_ID = "ferry-relay";
const SHOTS = process.env.FERRY_UPDATE_SCREENSHOTS === "1" ? join(ROOT, "docs/login") : tempDir();
mkdirSync(SHOTS, { recursive: true });
const BOB = { login: "bob", password: "builder", email: "bob@other.example", name: "Bob Other", groups: ["support"] };

/** The app: a page whose script fetches api/me and echoes over ws; api/me answers what X-Ferry-Identity says. */
interface App {
  url: string;
  /** Every Cookie header the app got. */
  cookies: string[];
  close(): Promise<void>;
}

const PAGE = `<!doctype html><html><body><h1 id="title">The app</h1><p id="who">...</p><p id="ws">...</p><script>
fetch("api/me").then((r) => r.json()).then((j) => { document.getElementById("who").textContent = j.email + " " + j.groups.join(","); });
const ws = new WebSocket(location.href.replace(/^http/, "ws").replace(/[^/]*$/, "") + "ws");
ws.onopen = () => ws.send("hello");
ws.onmessage = (e) => { document.getElementById("ws").textContent = "echo:" + e.data; };
</script></body></html>`;

async function startApp(): Promise<App> {
  const cookies: string[] = [];
  const record = (req: IncomingMessage) => {
    if (req.headers.cookie !== undefined) cookies.push(req.headers.cookie);
  };
  const server: Server = createServer((req, res) => {
    record(req);
    if (req.url === "/api/me") {
      const identity = String(req.headers["x-ferry-identity"] ?? "");
      const claims = identity ? JSON.parse(Buffer.from(identity.split(".")[1]!, "base64url").toString()) : {};
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(claims));
      return;
    }
    if (req.url === "/shared.css" || req.url === "/cdn.css") {
      const cache = req.url === "/cdn.css" ? { "cdn-cache-control": "max-age=60" } : { "cache-control": "public, max-age=60" };
      res.writeHead(200, { "content-type": "text/css", ...cache }).end("h1{}");
      return;
    }
    res.writeHead(200, { "content-type": "text/html", "set-cookie": "app_pref=dark; Path=/" }).end(PAGE);
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on("upgrade", (req, socket, head) => {
    record(req);
    wss.handleUpgrade(req, socket, head, (ws) => ws.on("message", (data) => ws.send(data.toString())));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    cookies,
    close: () =>
      new Promise((resolve) => {
        wss.close();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function loginPolicy(issuer: string, secret: string, extra: Record<string, unknown> = {}) {
  return fromJson(AccessPolicySchema, {
    rules: [
      {
        name: "people",
        targets: ["app"],
        require: ["login"],
        login: { issuer, clientId: CLIENT_ID, clientSecret: secret, allowedEmailDomains: ["example.com"], claims: { groups: "support" }, ...extra },
      },
    ],
  });
}

async function sessionCookie(context: BrowserContext): Promise<string> {
  const cookie = (await context.cookies()).find((c) => c.name === "ferry_session");
  expect(cookie).toBeDefined();
  return cookie!.value;
}

describe("sign-in at one relay", () => {
  const keys = [randomBytes(32)];
  let idp: TestOidcProvider;
  let relay: TestRelay;
  let app: App;
  let connector: Connector;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let base: string;
  /** Alice's session for the app, sealed with the relay's own keys as a sign-in would have made it, at the times given. */
  const aliceSession = (times: { iat: number; seen: number; exp: number }) =>
    sealSession(
      createSecretBox(keys),
      { sub: "alice", email: "alice@example.com", emailVerified: true, groups: ["support"], claims: { groups: ["support"] }, ...times },
      { tenant: "acme", target: "app", issuer: idp.issuer, clientId: CLIENT_ID },
    );
  /** The callback the provider sent the browser to, with the state cookie it carried: for the replay test. */
  let callback: { url: string; cookie: string } | undefined;

  beforeAll(async () => {
    idp = await startOidcProvider({ users: [{ login: "alice", password: "wonderland", email: "alice@example.com", name: "Alice Example", groups: ["support"] }, BOB] });
    relay = await startTestRelay({ secretKeys: keys });
    app = await startApp();
    base = `${relay.url}/relay/acme/app`;
    await idp.addLoginClient({
      clientId: CLIENT_ID,
      redirectUris: [`${base}/.ferry/callback`, `${relay.url}/relay/beta/app/.ferry/callback`],
      postLogoutRedirectUris: [`${base}/.ferry/logged-out`],
    });
    const key = await relay.tenantWithKey("acme");
    connector = await startTestConnector(relay.url, key, { app: app.url }, { tunnels: 1 });
    await relay.admin.setAccessPolicy({ tenant: "acme", policy: loginPolicy(idp.issuer, idp.secretOf(CLIENT_ID)) });
    browser = await launchChromium();
    context = await browser.newContext();
    page = await context.newPage();
    page.on("request", (req) => {
      if (req.url().includes("/.ferry/callback")) void req.allHeaders().then((h) => (callback = { url: req.url(), cookie: h.cookie ?? "" }));
    });
  });
  afterAll(async () => {
    await browser?.close();
    await connector?.stop();
    await relay?.close();
    await Promise.all([app?.close(), idp?.close()]);
  });

  it("stores the client secret sealed, never in clear, and gives back only the sealed form", async () => {
    const { policy } = await relay.admin.getAccessPolicy({ tenant: "acme" });
    const login = policy!.rules[0]!.login!;
    expect(login.clientSecret).toBe("");
    expect(login.clientSecretSealed).toMatch(/^[A-Za-z0-9_-]{8}\.[A-Za-z0-9_-]+$/);
    const { readdirSync } = await import("node:fs");
    const all = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? all(join(dir, e.name)) : [readFileSync(join(dir, e.name), "latin1")]));
    expect(all(relay.dataDir).some((text) => text.includes(idp.secretOf(CLIENT_ID)))).toBe(false);
    // Read back and set again (the operator's edit loop): the sealed secret still works, as the sign-in below shows.
    await relay.admin.setAccessPolicy({ tenant: "acme", policy });
    // The sealed secret is bound to its client id: with another one it would never open, so the policy is refused.
    const moved = structuredClone(policy!);
    moved.rules[0]!.login!.clientId = "someone-else";
    await expect(relay.admin.setAccessPolicy({ tenant: "acme", policy: moved })).rejects.toThrow(/does not open for this tenant, issuer and client id/);
    // Whoever sets the policy picks the issuer the secret goes to: only the tenant's own variables may be named.
    const fromEnv = loginPolicy(idp.issuer, "", { clientSecretEnv: "FERRY_SECRET_KEY" });
    await expect(relay.admin.setAccessPolicy({ tenant: "acme", policy: fromEnv })).rejects.toThrow(/must be FERRY_LOGIN_ACME_NAME, .*, not FERRY_SECRET_KEY/);
  });

  it("sends a browser to the provider, and back to the page it asked for once signed in; fetch and WebSocket pass", async () => {
    await page.goto(`${base}/?tab=2`);
    expect(new URL(page.url()).origin).toBe(idp.issuer);
    await page.waitForSelector("#login");
    await signIn(page);
    await page.waitForURL(`${base}/?tab=2`);
    await expect.poll(() => page.textContent("#who")).toBe("alice@example.com support");
    await expect.poll(() => page.textContent("#ws")).toBe("echo:hello");
    const cookie = (await context.cookies()).find((c) => c.name === "ferry_session")!;
    expect(cookie).toMatchObject({ path: "/relay/acme/app/", httpOnly: true, sameSite: "Lax", secure: false });
  });

  it("hands the target the identity, never the relay's cookies", async () => {
    const me = (await (await page.request.get(`${base}/api/me`)).json()) as Record<string, unknown>;
    expect(me).toMatchObject({ auth: "login", sub: "alice", email: "alice@example.com", name: "Alice Example", groups: ["support"], rule: "people" });
    expect(app.cookies.length).toBeGreaterThan(0);
    expect(app.cookies.some((c) => c.includes("app_pref=dark"))).toBe(true);
    expect(app.cookies.every((c) => !c.includes("ferry_"))).toBe(true);
  });

  it("answers a script's call without a session with 401, and a page navigation with the way to sign in", async () => {
    const json = await fetch(`${base}/api/me`, { headers: { accept: "application/json" } });
    expect(json.status).toBe(401);
    expect(((await json.json()) as { error: { code: string } }).error.code).toBe("login_required");
    // node:http, not fetch: fetch sets Sec-Fetch-Mode itself, as a browser's scripts do.
    const post = await request(`${base}/form`, { method: "POST", headers: { accept: "text/html", "sec-fetch-mode": "navigate" } });
    expect(post.status).toBe(401);
    const nav = await request(`${base}/deep/page?x=1`, { headers: { accept: "text/html", "sec-fetch-mode": "navigate" } });
    expect(nav.status).toBe(302);
    expect(nav.headers.location).toBe(`/relay/acme/app/.ferry/login?return=${encodeURIComponent("/deep/page?x=1")}`);
    // A browser without Fetch Metadata: a navigation is what asks for HTML.
    expect((await request(`${base}/`, { headers: { accept: "text/html,application/xhtml+xml" } })).status).toBe(302);
  });

  it("refuses a WebSocket without a session before the upgrade", async () => {
    const { openWebSocket } = await import("../helpers/websocket-targets.js");
    await expect(openWebSocket(`${base.replace(/^http/, "ws")}/ws`)).rejects.toThrow(/401/);
  });

  it("refuses tampered, expired and other-tenant sessions", async () => {
    const good = await sessionCookie(context);
    const get = (cookie: string, path = `${base}/api/me`) => fetch(path, { headers: { cookie: `ferry_session=${cookie}` } });
    expect((await get(good)).status).toBe(200);
    const flipped = good.slice(0, -3) + (good.at(-3) === "A" ? "B" : "A") + good.slice(-2);
    expect((await get(flipped)).status).toBe(401);
    // Sealed with the relay's own keys, so only its age is wrong: idle for two hours (the default allows one).
    const now = Date.now();
    const expired = await get(aliceSession({ iat: now - 3 * 3_600_000, seen: now - 2 * 3_600_000, exp: now + 3_600_000 }));
    expect(expired.status).toBe(401);
    expect(((await expired.json()) as { error: { code: string } }).error.code).toBe("login_expired");
    // The same person's session for another tenant's app (same provider, same client): it does not open there.
    await relay.admin.createTenant({ name: "beta" });
    await relay.admin.setAccessPolicy({ tenant: "beta", policy: loginPolicy(idp.issuer, idp.secretOf(CLIENT_ID)) });
    const other = await get(good, `${relay.url}/relay/beta/app/api/me`);
    expect(other.status).toBe(401);
    expect(((await other.json()) as { error: { code: string } }).error.code).toBe("login_required");
  });

  it("renews a session on the target's answers, but not on one a shared cache may keep", async () => {
    const now = Date.now();
    const cookie = `ferry_session=${aliceSession({ iat: now - 300_000, seen: now - 120_000, exp: now + 3_600_000 })}`;
    const own = await fetch(`${base}/api/me`, { headers: { cookie } });
    expect(own.status).toBe(200);
    expect(own.headers.get("set-cookie")).toMatch(/^ferry_session=/);
    const shared = await fetch(`${base}/shared.css`, { headers: { cookie } });
    expect(shared.status).toBe(200);
    expect(shared.headers.get("cache-control")).toBe("public, max-age=60");
    expect(shared.headers.get("set-cookie")).toBeNull();
    expect((await fetch(`${base}/cdn.css`, { headers: { cookie } })).headers.get("set-cookie")).toBeNull();
  });

  it("refuses a replayed callback and a return URL that leaves the app", async () => {
    expect(callback).toBeDefined();
    const replay = await fetch(callback!.url, { headers: { cookie: callback!.cookie }, redirect: "manual" });
    expect(replay.status).toBe(400);
    expect(await replay.text()).toContain("already completed");
    for (const bad of ["//evil.example/x", "https://evil.example/", "/\\evil.example"]) {
      const res = await fetch(`${base}/.ferry/login?return=${encodeURIComponent(bad)}`, { redirect: "manual" });
      expect(res.status, bad).toBe(400);
    }
    const noState = await fetch(`${base}/.ferry/callback?code=x&state=y`, { redirect: "manual" });
    expect(noState.status).toBe(400);
  });

  it("does not sign anyone out for another site: a button to press instead, and a cross-site POST is refused", async () => {
    const cookie = `ferry_session=${await sessionCookie(context)}`;
    for (const site of ["cross-site", "same-site"]) {
      const asked = await request(`${base}/.ferry/logout`, { headers: { cookie, "sec-fetch-site": site, "sec-fetch-mode": "navigate" } });
      expect(asked.status, site).toBe(200);
      expect(asked.headers["set-cookie"], site).toBeUndefined();
      expect(asked.body.toString()).toContain('<form method="post" action="/relay/acme/app/.ferry/logout"><button id="next"');
      const posted = await request(`${base}/.ferry/logout`, { method: "POST", headers: { cookie, "sec-fetch-site": site } });
      expect(posted.status, site).toBe(403);
      expect(posted.headers["set-cookie"], site).toBeUndefined();
    }
    const noMetadata = await request(`${base}/.ferry/logout`, { method: "POST", headers: { cookie, origin: "https://evil.example" } });
    expect(noMetadata.status).toBe(403);
    expect((await fetch(`${base}/api/me`, { headers: { cookie } })).status).toBe(200);
  });

  it("signs out at the relay and at the provider: the next visit asks for the password again", async () => {
    await page.goto(`${base}/.ferry/logout`);
    await page.click("#logout-confirm");
    await page.waitForURL(`${base}/.ferry/logged-out`);
    expect(await page.textContent("#message")).toContain("signed out");
    expect((await context.cookies()).some((c) => c.name === "ferry_session")).toBe(false);
    await shot(page, "login-signed-out");
    await page.goto(`${base}/`);
    expect(new URL(page.url()).origin).toBe(idp.issuer);
    await page.waitForSelector("#login");
  });

  it("refuses a person outside the allowed email domains with a readable page", async () => {
    await signIn(page, BOB);
    await page.waitForURL(/\/\.ferry\/callback/);
    expect(await page.textContent("h1")).toBe("You cannot use this app");
    expect(await page.textContent("#message")).toContain("example.com");
    await shot(page, "login-refused");
    expect((await context.cookies()).some((c) => c.name === "ferry_session")).toBe(false);
  });

  it("audits sign-ins, refusals and sign-outs, and counts them", async () => {
    const { events } = await relay.admin.listAuditEvents({ tenant: "acme", pageSize: 100 });
    const actions = events.map((e) => e.action);
    expect(actions).toEqual(expect.arrayContaining(["login", "logout", "login.refused", "login.failed"]));
    const login = events.find((e) => e.action === "login")!;
    expect(login.actor).toBe("login:alice");
    const metrics = await (await fetch(`${relay.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).text();
    expect(metrics).toMatch(/ferry_logins_total\{tenant="acme",outcome="success"\} 1/);
    expect(metrics).toMatch(/ferry_logins_total\{tenant="acme",outcome="refused"\} 1/);
  });

  it("ends every session begun so far from the CLI: they are refused, a sign-in after that passes", async () => {
    const sealedAt = (iat: number) => aliceSession({ iat, seen: iat, exp: iat + 3_600_000 });
    const get = (cookie: string) => fetch(`${base}/api/me`, { headers: { cookie: `ferry_session=${cookie}` } });
    const before = sealedAt(Date.now() - 1000);
    expect((await get(before)).status).toBe(200);
    const cli = await runFerry(["admin", "access", "end-sessions", "acme", "--relay", relay.url], { FERRY_TOKEN: ADMIN_TOKEN });
    expect(cli.stderr).toBe("");
    expect(cli.stdout).toMatch(/^ended the sessions of tenant acme's rule people begun until \d{4}-/);
    const ended = await get(before);
    expect(ended.status).toBe(401);
    expect(((await ended.json()) as { error: { code: string } }).error.code).toBe("login_expired");
    const { policy } = await relay.admin.getAccessPolicy({ tenant: "acme" });
    const notBefore = Number(policy!.rules[0]!.login!.sessionsNotBefore!.seconds) * 1000;
    expect((await get(sealedAt(notBefore + 1000))).status).toBe(200);
    const unknown = await runFerry(["admin", "access", "end-sessions", "acme", "--rule", "nobody", "--relay", relay.url], { FERRY_TOKEN: ADMIN_TOKEN });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('no login rule named "nobody"');
    const { events } = await relay.admin.listAuditEvents({ tenant: "acme", pageSize: 100 });
    expect(events.find((e) => e.action === "access.end-sessions")?.details).toMatchObject({ rules: ["people"] });
    // A time to come would refuse every sign-in until then: access set refuses it.
    const ahead = structuredClone(policy!);
    ahead.rules[0]!.login!.sessionsNotBefore = timestampFromMs(Date.now() + 3_600_000);
    await expect(relay.admin.setAccessPolicy({ tenant: "acme", policy: ahead })).rejects.toThrow(/sessionsNotBefore is in the future/);
    // The policy file as it was before, set again (kept in git, or a console page opened earlier): the sessions stay ended.
    await relay.admin.setAccessPolicy({ tenant: "acme", policy: loginPolicy(idp.issuer, idp.secretOf(CLIENT_ID)) });
    expect((await get(before)).status).toBe(401);
    // A session is good under every rule of its provider and client: ending one rule's ends it under all of them.
    const two = loginPolicy(idp.issuer, idp.secretOf(CLIENT_ID));
    two.rules.unshift(structuredClone(two.rules[0]!));
    Object.assign(two.rules[0]!, { name: "admins", paths: ["/admin/"] });
    await relay.admin.setAccessPolicy({ tenant: "acme", policy: two });
    const later = sealedAt(Date.now() - 100);
    expect((await get(later)).status).toBe(200);
    const endedBoth = await relay.admin.endLoginSessions({ tenant: "acme", rule: "admins" });
    expect(endedBoth.rules).toEqual(["admins", "people"]);
    expect((await get(later)).status).toBe(401);
    await relay.admin.setAccessPolicy({ tenant: "acme", policy: loginPolicy(idp.issuer, idp.secretOf(CLIENT_ID)) });
  });
});

describe("sign-in paths under their rule's address lists, rate limit and back-off", () => {
  let idp: TestOidcProvider;
  let relay: TestRelay;
  let base: string;
  const rule = (name: string, target: string, extra: Record<string, unknown>) => ({
    name,
    targets: [target],
    require: ["login"],
    login: { issuer: idp.issuer, clientId: CLIENT_ID, clientSecret: idp.secretOf(CLIENT_ID) },
    ...extra,
  });
  const code = async (res: Response) => ((await res.json()) as { error: { code: string } }).error.code;
  /** A sign-in begun for real: its state (from the provider's URL) and the state cookie. */
  const begin = async () => {
    const res = await fetch(`${base}/app/.ferry/login`, { redirect: "manual" });
    expect(res.status).toBe(302);
    const state = new URL(res.headers.get("location")!).searchParams.get("state")!;
    return { state, cookie: res.headers.get("set-cookie")!.split(";")[0]! };
  };

  beforeAll(async () => {
    [idp, relay] = await Promise.all([startOidcProvider(), startTestRelay({ secretKeys: [randomBytes(32)] })]);
    base = `${relay.url}/relay/acme`;
    await idp.addLoginClient({ clientId: CLIENT_ID, redirectUris: [`${base}/app/.ferry/callback`] });
    await relay.tenantWithKey("acme");
    const rules = [
      rule("office", "office", { allowIps: ["10.0.0.0/8"] }),
      rule("few", "few", { rateLimit: { requests: 2, per: "60s", by: "ip" } }),
      rule("misset", "misset", { login: { issuer: idp.issuer, clientId: CLIENT_ID, clientSecret: "not-the-secret" } }),
      rule("people", "app", {}),
    ];
    await relay.admin.setAccessPolicy({ tenant: "acme", policy: fromJson(AccessPolicySchema, { rules }) });
  });
  afterAll(async () => {
    await relay?.close();
    await idp?.close();
  });

  it("refuses a sign-in from an address the rule does not allow, before the provider is asked", async () => {
    const res = await fetch(`${base}/office/.ferry/login`, { redirect: "manual" });
    expect(res.status).toBe(403);
    expect(await code(res)).toBe("ip_not_allowed");
    const { events } = await relay.admin.listAuditEvents({ tenant: "acme", pageSize: 100 });
    expect(events.find((e) => e.action === "login.refused")?.details).toMatchObject({ rule: "office", why: "ip_not_allowed" });
  });

  it("takes sign-ins from the rule's rate limit", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await fetch(`${base}/few/.ferry/login`, { redirect: "manual" })).status);
    expect(statuses).toEqual([302, 302, 429]);
  });

  it("says the app's client is misconfigured when the provider refuses its secret, and counts nothing against the person", async () => {
    const begun = await fetch(`${base}/misset/.ferry/login`, { redirect: "manual" });
    const state = new URL(begun.headers.get("location")!).searchParams.get("state")!;
    const cookie = begun.headers.get("set-cookie")!.split(";")[0]!;
    const res = await fetch(`${base}/misset/.ferry/callback?state=${state}&code=whatever`, { headers: { cookie }, redirect: "manual" });
    expect(res.status).toBe(503);
    const page = await res.text();
    expect(page).toContain("invalid_client");
    expect(page).toContain("tell the operator");
    const { events } = await relay.admin.listAuditEvents({ tenant: "acme", pageSize: 100 });
    expect(events.find((e) => e.action === "login.failed" && e.details?.target === "misset")?.details).toMatchObject({ reason: "login_misconfigured" });
  });

  it("counts codes the provider refuses against the source, then refuses it before the provider is asked; forged states cost nothing", async () => {
    // What any site could make a visitor's browser do: never counted, or it could put an office's address in back-off.
    for (let i = 0; i < 7; i++) {
      const forged = await fetch(`${base}/app/.ferry/callback?state=forged${i}&code=x`, { headers: { cookie: (await begin()).cookie }, redirect: "manual" });
      expect(forged.status).toBe(400);
    }
    // A genuine state with a made-up code: the relay had to ask the provider, which refused.
    for (let i = 0; i < 5; i++) {
      const genuine = await begin();
      const refused = await fetch(`${base}/app/.ferry/callback?state=${genuine.state}&code=made-up`, { headers: { cookie: genuine.cookie }, redirect: "manual" });
      expect(refused.status).toBe(401);
    }
    const again = await fetch(`${base}/app/.ferry/login`, { redirect: "manual" });
    expect(again.status).toBe(429);
    expect(await code(again)).toBe("too_many_failures");
    expect(Number(again.headers.get("retry-after"))).toBeGreaterThan(0);
    // Signing out is never refused.
    expect((await fetch(`${base}/app/.ferry/logout`, { redirect: "manual" })).status).not.toBe(429);
  });
});

describe("sign-in on an app's own host name, over TLS", () => {
  const keys = [randomBytes(32)];
  let idp: TestOidcProvider;
  let relay: TestRelay;
  let app: App;
  let connector: Connector;
  let browser: Browser;
  let origin: string;

  beforeAll(async () => {
    const pki = makeTestPki();
    const leaf = issueCert(pki, { name: "apps.test", usage: "serverAuth", san: ["DNS:*.acme.apps.test", "DNS:localhost", "IP:127.0.0.1"] });
    [idp, relay, app] = await Promise.all([
      startOidcProvider(),
      startTestRelay({ baseDomain: "apps.test", secretKeys: keys, tlsCert: leaf.cert, tlsKey: leaf.key, ca: pki.ca }),
      startApp(),
    ]);
    origin = `https://app.acme.apps.test:${relay.server.port}`;
    await idp.addLoginClient({ clientId: CLIENT_ID, redirectUris: [`${origin}/.ferry/callback`] });
    const key = await relay.tenantWithKey("acme");
    connector = await startTestConnector(relay.url, key, { app: app.url }, { tunnels: 1, flags: { ca: pki.ca } });
    await relay.admin.setAccessPolicy({ tenant: "acme", policy: loginPolicy(idp.issuer, idp.secretOf(CLIENT_ID)) });
    browser = await launchChromium(["--host-resolver-rules=MAP *.apps.test 127.0.0.1"]);
  });
  afterAll(async () => {
    await browser?.close();
    await connector?.stop();
    await relay?.close();
    await Promise.all([app?.close(), idp?.close()]);
  });

  it("keeps the sign-in paths and a __Host- session cookie on that host, at its root; a cookie without the prefix is not taken", async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    await page.goto(`${origin}/reports`);
    await signIn(page);
    await page.waitForURL(`${origin}/reports`);
    await expect.poll(() => page.textContent("#who")).toBe("alice@example.com support");
    await expect.poll(() => page.textContent("#ws")).toBe("echo:hello");
    const cookies = await context.cookies();
    expect(cookies.find((c) => c.name === "__Host-ferry_session")).toMatchObject({ domain: "app.acme.apps.test", path: "/", secure: true, httpOnly: true });
    // What a page on a sibling host could plant (Domain=apps.test): the plain name, which the relay does not read here.
    expect(cookies.some((c) => c.name === "ferry_session" || c.name === "ferry_login")).toBe(false);
    await shot(page, "login-app-signed-in");
    const value = cookies.find((c) => c.name === "__Host-ferry_session")!.value;
    const asked = () => page.evaluate(async () => (await fetch("/api/me")).status);
    expect(await asked()).toBe(200);
    await context.clearCookies();
    await context.addCookies([{ name: "ferry_session", value, domain: ".apps.test", path: "/", secure: true, httpOnly: true, sameSite: "Lax" }]);
    expect(await asked()).toBe(401);
    await context.close();
  });
});

describe("sign-in in a cluster", () => {
  const keys = [randomBytes(32)];
  let nats: NatsServer;
  let idp: TestOidcProvider;
  let a: TestRelay;
  let b: TestRelay;
  let app: App;
  let connector: Connector;
  let browser: Browser;

  const node = (nodeId: string) => startTestRelay({ nats: { servers: [nats.url] }, nodeId, secretKeys: keys });

  beforeAll(async () => {
    nats = await startNatsServer();
    [idp, a, b, app] = await Promise.all([startOidcProvider(), node("a"), node("b"), startApp()]);
    await idp.addLoginClient({ clientId: CLIENT_ID, redirectUris: [`${a.url}/relay/acme/app/.ferry/callback`, `${b.url}/relay/acme/app/.ferry/callback`] });
    const key = await a.tenantWithKey("acme");
    connector = await startTestConnector(a.url, key, { app: app.url }, { tunnels: 1 });
    await a.admin.setAccessPolicy({ tenant: "acme", policy: loginPolicy(idp.issuer, idp.secretOf(CLIENT_ID)) });
    // Node b has the policy (through the KV bucket) and routes to the connector on a.
    await eventually(async () => (await fetch(`${b.url}/relay/acme/app/api/me`)).status === 401, "node b applying the policy");
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await connector?.stop();
    await Promise.all([a?.close(), b?.close()]);
    await Promise.all([app?.close(), idp?.close()]);
    await nats?.close();
  });

  it("finishes a sign-in begun on one node on the other, and either node takes the session", async () => {
    // Begun on node a (what a load balancer sent there): the state travels sealed in the cookie, nothing stays on a.
    const begin = await request(`${a.url}/relay/acme/app/.ferry/login?return=%2Fhome`);
    expect(begin.status).toBe(302);
    const stateCookie = String(begin.headers["set-cookie"]).split(";")[0]!;
    expect(stateCookie).toMatch(/^ferry_login=/);
    // The person signs in at the provider in a browser, which is sent back to a's callback; that browser lacks the
    // state cookie (the sign-in began elsewhere), so a refuses it before redeeming anything.
    const context = await browser.newContext();
    const page = await context.newPage();
    let callbackUrl = "";
    page.on("request", (r) => {
      if (r.url().includes("/.ferry/callback")) callbackUrl = r.url();
    });
    await page.goto(String(begin.headers.location));
    await signIn(page);
    await page.waitForURL(/\/\.ferry\/callback/);
    expect(await page.textContent("#message")).toContain("expired or was started in another browser");
    // The same callback, with the state cookie, reaches node b behind the load balancer (one public name for both
    // nodes, here a's: the redirect URI must be the one the sign-in began with): b finishes the sign-in.
    const done = await request(callbackUrl.replace(a.url, b.url), { headers: { cookie: stateCookie, host: new URL(a.url).host } });
    expect(done.status, done.body.toString()).toBe(302);
    expect(done.headers.location).toBe("/relay/acme/app/home");
    const session = ([done.headers["set-cookie"]].flat() as string[]).find((c) => c.startsWith("ferry_session="))!.split(";")[0]!;
    for (const node of [a, b]) {
      const me = await fetch(`${node.url}/relay/acme/app/api/me`, { headers: { cookie: session } });
      expect(me.status).toBe(200);
      expect(await me.json()).toMatchObject({ auth: "login", sub: "alice", email: "alice@example.com" });
    }
    await context.close();
  });
});

/** A screenshot to look at (docs/login with FERRY_UPDATE_SCREENSHOTS=1, else a temporary directory). */
async function shot(page: Page, name: string): Promise<void> {
  const file = join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file });
  expect(readFileSync(file).subarray(1, 4).toString()).toBe("PNG");
}
