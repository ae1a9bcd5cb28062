import { createHash, randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createRemoteJWKSet, jwtVerify } from "jose";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium } from "../helpers/browser.js";
import { signIn, startOidcProvider, type TestOidcProvider } from "../helpers/oidc-provider.js";

/**
 * The test provider's browser sign-in, end to end, against a relying party
 * written by hand here (no Ferry code): authorization code flow with state,
 * nonce, PKCE S256 and client_secret_basic, then RP-initiated logout.
 * The steps run in order and build on each other (one browser session).
 */

interface Discovery {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  jwks_uri: string;
  end_session_endpoint: string;
  scopes_supported: string[];
}

const RP_CLIENT = "hand-made-rp";
let idp: TestOidcProvider;
let discovery: Discovery;
let rp: Server;
let rpOrigin: string;
let browser: Browser;
let page: Page;
/** The last code the RP redeemed, and its verifier: for the replay step. */
let lastCode: { code: string; verifier: string } | undefined;

const b64url = (bytes: Buffer) => bytes.toString("base64url");
const basicAuth = (id: string, secret: string) =>
  `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString("base64")}`;

function redeem(code: string, verifier: string) {
  return fetch(discovery.token_endpoint, {
    method: "POST",
    headers: { authorization: basicAuth(RP_CLIENT, idp.secretOf(RP_CLIENT)), "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: `${rpOrigin}/cb`, code_verifier: verifier }),
  });
}

/** A minimal RP: /start sends the browser to the provider, /cb redeems the code and shows who signed in. */
function startRp(): Promise<Server> {
  const pending = new Map<string, { nonce: string; verifier: string }>();
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", rpOrigin);
    const reply = (status: number, body: string) =>
      res.writeHead(status, { "content-type": "text/html; charset=utf-8" }).end(`<!doctype html><body>${body}</body>`);
    if (url.pathname === "/start") {
      const state = b64url(randomBytes(16));
      const nonce = b64url(randomBytes(16));
      const verifier = b64url(randomBytes(32));
      pending.set(state, { nonce, verifier });
      const auth = new URL(discovery.authorization_endpoint);
      auth.search = new URLSearchParams({
        response_type: "code",
        client_id: RP_CLIENT,
        redirect_uri: `${rpOrigin}/cb`,
        scope: "openid email profile",
        state,
        nonce,
        code_challenge: b64url(createHash("sha256").update(verifier).digest()),
        code_challenge_method: "S256",
      }).toString();
      res.writeHead(302, { location: auth.href }).end();
    } else if (url.pathname === "/cb") {
      const flow = pending.get(url.searchParams.get("state") ?? "");
      const code = url.searchParams.get("code");
      if (!flow || !code) return reply(400, `<p id="rp-error">bad callback ${url.search}</p>`);
      pending.delete(url.searchParams.get("state")!);
      void (async () => {
        const token = await redeem(code, flow.verifier);
        const body = (await token.json()) as { id_token?: string; error?: string };
        if (token.status !== 200 || !body.id_token) throw new Error(`token endpoint: ${token.status} ${body.error}`);
        lastCode = { code, verifier: flow.verifier };
        const { payload } = await jwtVerify(body.id_token, createRemoteJWKSet(new URL(discovery.jwks_uri)), {
          issuer: discovery.issuer,
          audience: RP_CLIENT,
        });
        if (payload.nonce !== flow.nonce) throw new Error("nonce mismatch");
        reply(200, `<p id="email">${payload.email}</p><p id="name">${payload.name}</p><p id="groups">${(payload.groups as string[]).join(",")}</p>`);
      })().catch((err: Error) => reply(500, `<p id="rp-error">${err.message}</p>`));
    } else if (url.pathname === "/signed-out") {
      reply(200, `<p id="bye">Signed out of the RP, state ${url.searchParams.get("state")}</p>`);
    } else {
      reply(404, "not found");
    }
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

beforeAll(async () => {
  // A login client given at start, on a localhost-style http host: the provider checks it when built.
  [idp, browser] = await Promise.all([
    startOidcProvider({ loginClients: [{ clientId: "early", redirectUris: ["http://relay.localhost:8443/cb"] }] }),
    launchChromium(),
  ]);
  discovery = (await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json()) as Discovery;
  rp = await startRp();
  rpOrigin = `http://127.0.0.1:${(rp.address() as AddressInfo).port}`;
  // The RP's URL is known only now, as a relay's would be.
  await idp.addLoginClient({ clientId: RP_CLIENT, redirectUris: [`${rpOrigin}/cb`], postLogoutRedirectUris: [`${rpOrigin}/signed-out`] });
  page = await browser.newPage();
  // Every step is fast; a missing element should fail the test in seconds, not Playwright's 30.
  page.setDefaultTimeout(5_000);
});

afterAll(async () => {
  await browser?.close();
  await new Promise((resolve) => (rp ? (rp.closeAllConnections(), rp.close(resolve)) : resolve(undefined)));
  await idp?.close();
});

describe("the test OpenID provider's browser sign-in", () => {
  it("keeps client credentials working and refuses client metadata oidc-provider rejects", async () => {
    expect(idp.secretOf("early")).toMatch(/^[\w-]{32}$/);
    expect(idp.secretOf("ferry-test")).not.toBe(idp.secretOf(RP_CLIENT));
    expect(await idp.tokenFor("ferry-test")).toMatch(/^ey/);
    expect(discovery.scopes_supported).toEqual(expect.arrayContaining(["openid", "email", "profile", "groups"]));
    // A fragment in a redirect URI is never allowed: the rebuild fails and the old provider stays.
    await expect(idp.addLoginClient({ clientId: "bad", redirectUris: ["http://127.0.0.1:1/cb#x"] })).rejects.toThrow(/"bad" refused: invalid_redirect_uri \(redirect_uris must not contain fragments\)/);
    expect(() => idp.secretOf("bad")).toThrow();
    expect((await fetch(discovery.jwks_uri)).status).toBe(200);
  });

  it("shows its login form, refuses a wrong password, and signs in with the ID token's claims", async () => {
    await page.goto(`${rpOrigin}/start`);
    expect(new URL(page.url()).origin).toBe(idp.issuer);
    await expect(page.locator("#submit").textContent()).resolves.toBe("Sign in");

    await page.fill("#login", "alice");
    await page.fill("#password", "not-her-password");
    await page.click("#submit");
    await page.getByText("Invalid login or password").waitFor();
    // signIn reports a refusal instead of waiting for a navigation that will not come.
    await expect(signIn(page, { login: "alice", password: "still-wrong" })).rejects.toThrow(/Invalid login or password/);

    await signIn(page);
    expect(page.url()).toMatch(new RegExp(`^${rpOrigin}/cb\\?`));
    expect(await page.locator("#rp-error").count()).toBe(0);
    expect(await page.locator("#email").textContent()).toBe("alice@example.com");
    expect(await page.locator("#name").textContent()).toBe("Alice Example");
    expect(await page.locator("#groups").textContent()).toBe("support");
    expect(idp.requests.filter((p) => p.startsWith("/interaction/")).length).toBeGreaterThanOrEqual(4);
  });

  it("refuses a code redeemed a second time", async () => {
    expect(lastCode).toBeDefined();
    const again = await redeem(lastCode!.code, lastCode!.verifier);
    expect(again.status).toBe(400);
    expect(((await again.json()) as { error: string }).error).toBe("invalid_grant");
  });

  it("signs out by RP-initiated logout, after which signing in asks for the password again", async () => {
    // While the session lasts, a new sign-in needs no password (so the login form later means it ended).
    await page.goto(`${rpOrigin}/start`);
    expect(page.url()).toMatch(new RegExp(`^${rpOrigin}/cb\\?`));
    expect(await page.locator("#email").textContent()).toBe("alice@example.com");

    const logout = new URL(discovery.end_session_endpoint);
    logout.search = new URLSearchParams({ client_id: RP_CLIENT, post_logout_redirect_uri: `${rpOrigin}/signed-out`, state: "s1" }).toString();
    await page.goto(logout.href);
    await Promise.all([page.waitForURL(`${rpOrigin}/signed-out?state=s1`), page.click("#logout-confirm")]);
    expect(await page.locator("#bye").textContent()).toBe("Signed out of the RP, state s1");

    await page.goto(`${rpOrigin}/start`);
    expect(new URL(page.url()).origin).toBe(idp.issuer);
    await page.locator("#login").waitFor();
  });
});
