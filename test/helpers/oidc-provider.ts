import { randomBytes, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, type JWK } from "jose";
import type { Page } from "playwright-core";

/** Signing algorithms the test provider can use (the ones the verifier accepts by default). */
export type TestSigningAlg = "RS256" | "PS256" | "ES256" | "EdDSA";

export interface OidcProviderOptions {
  /** Client ids that may get tokens by client credentials; default ["ferry-test"]. */
  clients?: string[];
  /** The access tokens' signing algorithm; default RS256. */
  alg?: TestSigningAlg;
  /** Confidential clients that sign people in by the authorization code flow (client_secret_basic); default none. */
  loginClients?: LoginClient[];
  /** The people who can sign in on the provider's login page; default [DEFAULT_USER]. */
  users?: TestUser[];
}

export interface LoginClient {
  clientId: string;
  /** http(s) URIs, e.g. http://127.0.0.1:PORT/callback or http://relay.localhost:PORT/callback. */
  redirectUris: string[];
  /** Where RP-initiated logout may send the browser back to. */
  postLogoutRedirectUris?: string[];
}

export interface TestUser {
  /** What goes in the login form; also the "sub" claim. */
  login: string;
  password: string;
  email: string;
  name?: string;
  groups?: string[];
}

export const DEFAULT_USER: TestUser = {
  login: "alice",
  password: "wonderland",
  email: "alice@example.com",
  name: "Alice Example",
  groups: ["support"],
};

export interface TokenOptions {
  /** The token's "aud" (sent as the RFC 8707 resource indicator, so it must be an absolute URI); default "api://ferry-test". */
  audience?: string;
  /** Extra claims merged into the token (e.g. groups). */
  claims?: Record<string, unknown>;
  /** Seconds from now until "exp"; negative for a token that has already expired. Default 300. */
  expiresIn?: number;
  /** Seconds from now for "nbf" (a token not valid yet); default none. */
  notBefore?: number;
}

export interface TestOidcProvider {
  /** http://127.0.0.1:PORT: discovery is at {issuer}/.well-known/openid-configuration. */
  issuer: string;
  /** The provider's JWKS endpoint (what discovery's jwks_uri says). */
  jwksUri: string;
  /** An access token (a JWT) for `clientId` by the client credentials grant, through the provider's real token endpoint. */
  tokenFor(clientId: string, opts?: TokenOptions): Promise<string>;
  /** A new signing key (new kid) is published first and signs every token from now on; the old one stays published. */
  rotateKeys(): Promise<void>;
  /** The (random) secret of a client-credentials or login client. */
  secretOf(clientId: string): string;
  /**
   * Registers one more login client (e.g. once a relay's URL is known) by
   * rebuilding the provider behind the same socket; rejects, and keeps the
   * clients it had, when oidc-provider refuses the client's metadata.
   */
  addLoginClient(client: LoginClient): Promise<void>;
  /** The public keys the provider publishes now. */
  jwks(): { keys: JWK[] };
  /** The kid new tokens are signed with. */
  currentKid(): string;
  /** The path of every request the provider got, in order (e.g. "/.well-known/openid-configuration", "/jwks", "/token"). */
  requests: string[];
  close(): Promise<void>;
}

export const DEFAULT_AUDIENCE = "api://ferry-test";
/** Per-token options travel in this request header to the token customizer: no state shared between concurrent calls. */
const OPTIONS_HEADER = "x-test-token-options";
/** Where the provider sends the browser to sign in (and to consent, which this provider grants by itself). */
const INTERACTION_PATH = "/interaction/";
/** The largest login form body read; anything bigger is refused. */
const MAX_FORM_BYTES = 16 * 1024;

/**
 * A real OpenID provider (panva's oidc-provider, the certified implementation)
 * on 127.0.0.1 port 0, over http (the verifier allows http for loopback
 * issuers only). Tokens come from its token endpoint by the client credentials
 * grant with a resource indicator, formatted as JWT access tokens, so what the
 * verifier sees is what a real identity provider sends: its discovery document,
 * its JWKS, its kid, typ "at+jwt", its claims.
 *
 * Key rotation builds a new provider instance with the new key first (the old
 * one kept) behind the same listening socket, so the issuer and port stay and
 * the JWKS changes, as when an identity provider rolls its keys.
 *
 * Login clients sign people in by the authorization code flow: the browser
 * meets a plain login form at /interaction/:uid (served here, not by
 * oidc-provider's development interactions), consent is granted without
 * asking, and the ID token carries the scopes' claims (email, name, groups).
 * RP-initiated logout shows a "Sign out" button.
 */
export async function startOidcProvider(opts: OidcProviderOptions = {}): Promise<TestOidcProvider> {
  const alg = opts.alg ?? "RS256";
  const clients = opts.clients ?? ["ferry-test"];
  const loginClients = [...(opts.loginClients ?? [])];
  const users = opts.users ?? [DEFAULT_USER];
  const newSecret = () => randomBytes(24).toString("base64url");
  const secrets = new Map([...clients, ...loginClients.map((c) => c.clientId)].map((id) => [id, newSecret()]));
  const privateKeys: JWK[] = [];
  // Kept across rebuilds (key rotation, new login clients): sign-in sessions and grants survive them.
  const adapter = memoryAdapter();
  const cookieKeys = [randomBytes(16).toString("hex")];

  let provider: ProviderInstance | undefined;
  let handle: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0]!;
    requests.push(path);
    if (!provider || !handle) res.writeHead(503).end();
    // oidc-provider only redirects to the interaction URL; the pages there are ours.
    else if (path.startsWith(INTERACTION_PATH)) void interaction(provider, users, req, res);
    else handle(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const build = async () => {
    const Provider = await loadProvider();
    const signingKid = privateKeys[0]!.kid!;
    const loginIds = new Set(loginClients.map((c) => c.clientId));
    const next = new Provider(issuer, {
      adapter,
      clients: [
        ...clients.map((id) => ({
          client_id: id,
          client_secret: secrets.get(id)!,
          grant_types: ["client_credentials"],
          redirect_uris: [],
          response_types: [],
          // The client's default (RS256) must be a key the provider has, or it refuses the client.
          id_token_signed_response_alg: alg,
        })),
        ...loginClients.map((c) => ({
          client_id: c.clientId,
          client_secret: secrets.get(c.clientId)!,
          grant_types: ["authorization_code"],
          response_types: ["code"],
          redirect_uris: c.redirectUris,
          post_logout_redirect_uris: c.postLogoutRedirectUris ?? [],
          token_endpoint_auth_method: "client_secret_basic",
          // "web" (the default, said here on purpose) accepts http redirect URIs on any host for the
          // code flow; only implicit-flow web clients must use https, and "native" ones loopback only.
          application_type: "web",
          id_token_signed_response_alg: alg,
        })),
      ],
      jwks: { keys: privateKeys },
      ttl: { ClientCredentials: 300, AccessToken: 600, AuthorizationCode: 60, IdToken: 300, Session: 3600, Interaction: 600, Grant: 3600 },
      cookies: {
        keys: cookieKeys,
        // Cookies ignore ports: on 127.0.0.1 the relay and this provider share a cookie jar, so
        // names of our own keep oidc-provider's "_session" from meeting a relay's cookie. No
        // "secure" is needed over http: oidc-provider sets it only on requests that came by https.
        names: { session: "op_session", interaction: "op_interaction", resume: "op_interaction_resume" },
      },
      interactions: { url: (_ctx: unknown, i: { uid: string }) => `${INTERACTION_PATH}${i.uid}` },
      findAccount: (_ctx: unknown, sub: string) => {
        const user = users.find((u) => u.login === sub);
        if (!user) return undefined;
        return {
          accountId: sub,
          // oidc-provider passes on only the claims that the granted scopes name (`claims` below).
          claims: async () => ({ sub, email: user.email, email_verified: true, name: user.name, groups: user.groups ?? [] }),
        };
      },
      claims: { email: ["email", "email_verified"], profile: ["name", "groups"], groups: ["groups"] },
      // oidc-provider 9 leaves the scopes' claims out of an ID token issued with an access token
      // (they are for userinfo); the relay reads them from the ID token.
      conformIdTokenClaims: false,
      // PKCE for every client: a relying party that forgot it must fail here, not only at a strict provider.
      pkce: { required: () => true },
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
        resourceIndicators: {
          enabled: true,
          // Client credentials get a JWT for the test API; a sign-in (no resource asked for) gets
          // oidc-provider's usual access token for its userinfo endpoint.
          defaultResource: (_ctx: unknown, client: { clientId: string }, oneOf?: string) =>
            loginIds.has(client.clientId) ? oneOf : DEFAULT_AUDIENCE,
          useGrantedResource: () => true,
          getResourceServerInfo: (_ctx: unknown, resource: string) => ({
            scope: "api",
            audience: resource,
            accessTokenTTL: 300,
            accessTokenFormat: "jwt",
            jwt: { sign: { alg, kid: signingKid } },
          }),
        },
      },
      formats: {
        customizers: {
          jwt: (ctx: { get(name: string): string }, _token: unknown, jwt: { payload: Record<string, unknown> }) => {
            const raw = ctx.get(OPTIONS_HEADER);
            if (!raw) return;
            const o = JSON.parse(raw) as TokenOptions;
            const iat = jwt.payload.iat as number;
            Object.assign(jwt.payload, o.claims ?? {});
            if (o.expiresIn !== undefined) jwt.payload.exp = iat + o.expiresIn;
            if (o.notBefore !== undefined) jwt.payload.nbf = iat + o.notBefore;
          },
        },
      },
    });
    // oidc-provider checks a static client's metadata only when the client is first used: check
    // them all now, so a redirect URI it refuses fails here rather than in the middle of a sign-in.
    for (const id of secrets.keys()) {
      await next.Client.find(id).catch((err: Error & { error_description?: string }) => {
        throw new Error(`client "${id}" refused: ${err.message} (${err.error_description ?? ""})`, { cause: err });
      });
    }
    provider = next;
    handle = next.callback();
  };

  const addKey = async () => {
    const { privateKey } = await generateKeyPair(alg, { extractable: true });
    const jwk = { ...(await exportJWK(privateKey)), kid: randomUUID(), alg, use: "sig" };
    privateKeys.unshift(jwk);
  };

  await addKey();
  await build();

  return {
    issuer,
    jwksUri: `${issuer}/jwks`,
    requests,
    async tokenFor(clientId, o = {}) {
      const secret = secrets.get(clientId);
      if (secret === undefined) throw new Error(`client "${clientId}" is not one of ${clients.join(", ")}`);
      const res = await fetch(`${issuer}/token`, {
        method: "POST",
        headers: {
          authorization: `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString("base64")}`,
          "content-type": "application/x-www-form-urlencoded",
          [OPTIONS_HEADER]: JSON.stringify(o),
        },
        body: new URLSearchParams({ grant_type: "client_credentials", scope: "api", resource: o.audience ?? DEFAULT_AUDIENCE }),
      });
      const body = (await res.json()) as { access_token?: string; error?: string; error_description?: string };
      if (res.status !== 200 || !body.access_token) {
        throw new Error(`token endpoint answered ${res.status}: ${body.error ?? ""} ${body.error_description ?? ""}`);
      }
      return body.access_token;
    },
    async rotateKeys() {
      await addKey();
      await build();
    },
    secretOf(clientId) {
      const secret = secrets.get(clientId);
      if (secret === undefined) throw new Error(`no client "${clientId}"`);
      return secret;
    },
    async addLoginClient(client) {
      if (secrets.has(client.clientId)) throw new Error(`client "${client.clientId}" exists already`);
      loginClients.push(client);
      secrets.set(client.clientId, newSecret());
      try {
        await build();
      } catch (err) {
        // The provider in service is still the one without it.
        loginClients.pop();
        secrets.delete(client.clientId);
        throw err;
      }
    },
    jwks() {
      return { keys: privateKeys.map(publicPart) };
    },
    currentKid() {
      return privateKeys[0]!.kid!;
    },
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

/**
 * oidc-provider's storage, in memory for this instance only (its own default
 * is the same but warns on every start). JWT access tokens need little of it;
 * sign-in needs sessions by uid (to finish an interaction) and revocation by
 * grant (a code redeemed twice revokes what it gave).
 */
function memoryAdapter() {
  const stored = new Map<string, Record<string, unknown>>();
  return class {
    constructor(private readonly model: string) {}
    private key(id: string) {
      return `${this.model}:${id}`;
    }
    async upsert(id: string, payload: Record<string, unknown>) {
      stored.set(this.key(id), payload);
    }
    async find(id: string) {
      return stored.get(this.key(id));
    }
    async findByUid(uid: string) {
      for (const [key, p] of stored) if (key.startsWith(`${this.model}:`) && p.uid === uid) return p;
      return undefined;
    }
    async findByUserCode() {
      return undefined;
    }
    async consume(id: string) {
      const p = stored.get(this.key(id));
      if (p) p.consumed = Math.floor(Date.now() / 1000);
    }
    async destroy(id: string) {
      stored.delete(this.key(id));
    }
    async revokeByGrantId(grantId: string) {
      for (const [key, p] of stored) if (key.startsWith(`${this.model}:`) && p.grantId === grantId) stored.delete(key);
    }
  };
}

/**
 * The provider's interaction pages: the login form (GET shows it, POST checks
 * it), and consent, granted at once for whatever the client asked.
 */
async function interaction(provider: ProviderInstance, users: TestUser[], req: IncomingMessage, res: ServerResponse) {
  try {
    const details = await provider.interactionDetails(req, res);
    if (details.prompt.name === "consent") {
      await provider.interactionFinished(req, res, { consent: { grantId: await grantConsent(provider, details) } });
      return;
    }
    if (details.prompt.name !== "login") throw new Error(`unexpected prompt "${details.prompt.name}"`);
    if (req.method !== "POST") return html(res, 200, loginPage(details.uid));
    const form = await readForm(req);
    const user = users.find((u) => u.login === form.get("login"));
    if (!user || user.password !== form.get("password")) {
      return html(res, 401, loginPage(details.uid, form.get("login") ?? "", "Invalid login or password"));
    }
    // Not merged with an earlier submission: a failed attempt leaves nothing behind anyway.
    await provider.interactionFinished(req, res, { login: { accountId: user.login } }, { mergeWithLastSubmission: false });
  } catch (err) {
    if (!res.headersSent) {
      const status = (err as { status?: number }).status ?? 400;
      html(res, status, page("Sign-in failed", `<p id="error">${escapeHtml(String((err as Error).message ?? err))}</p>`));
    } else res.destroy();
  }
}

/** A grant with everything the consent prompt says is missing (as oidc-provider's docs do it). */
async function grantConsent(provider: ProviderInstance, details: InteractionDetails): Promise<string> {
  const accountId = details.session?.accountId;
  if (!accountId) throw new Error("consent without a signed-in account");
  const grant =
    (details.grantId ? await provider.Grant.find(details.grantId) : undefined) ??
    new provider.Grant({ accountId, clientId: String(details.params.client_id) });
  const missing = details.prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(" "));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [resource, scopes] of Object.entries(missing.missingResourceScopes ?? {})) grant.addResourceScope(resource, scopes.join(" "));
  return grant.save();
}

/** An application/x-www-form-urlencoded body, refused (413) past MAX_FORM_BYTES. */
async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) throw Object.assign(new Error("form too large"), { status: 413 });
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
}

function loginPage(uid: string, login = "", error?: string): string {
  return page(
    "Sign in",
    `${error ? `<p id="error" role="alert">${escapeHtml(error)}</p>` : ""}
<form method="post" action="${INTERACTION_PATH}${encodeURIComponent(uid)}">
  <label>Login <input id="login" name="login" autocomplete="username" value="${escapeHtml(login)}" required autofocus></label>
  <label>Password <input id="password" name="password" type="password" autocomplete="current-password" required></label>
  <button id="submit" type="submit">Sign in</button>
</form>`,
  );
}

/** RP-initiated logout asks first; `form` is oidc-provider's (with its xsrf token), submitted by the button with logout=yes. */
async function logoutSource(ctx: { body: unknown }, form: string) {
  ctx.body = page(
    "Sign out",
    `${form}<button id="logout-confirm" type="submit" form="op.logoutForm" name="logout" value="yes">Sign out</button>`,
  );
}

/** Where logout ends when the client gave no post_logout_redirect_uri. */
async function postLogoutSuccessSource(ctx: { body: unknown }) {
  ctx.body = page("Signed out", "<p>Signed out</p>");
}

function page(title: string, body: string): string {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head><body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;
}

function html(res: ServerResponse, status: number, body: string) {
  res.writeHead(status, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" }).end(body);
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * Signs in on the provider's login form, which `page` must be showing, and
 * waits until the browser has left the provider's interaction pages (back at
 * the client, normally). A refused login throws rather than waiting.
 */
export async function signIn(page: Page, user: Pick<TestUser, "login" | "password"> = DEFAULT_USER): Promise<void> {
  const provider = new URL(page.url()).origin;
  const onInteraction = (url: URL) => url.origin === provider && url.pathname.startsWith(INTERACTION_PATH);
  await page.fill("#login", user.login);
  await page.fill("#password", user.password);
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === "POST" && onInteraction(new URL(r.url()))),
    page.click("#submit"),
  ]);
  if (answer.status() !== 303) {
    throw new Error(`sign-in as "${user.login}" refused (${answer.status()}): ${await page.locator("#error").textContent()}`);
  }
  await page.waitForURL((url) => !onInteraction(url));
}

/** The public members of a private JWK (RSA, EC or OKP). */
function publicPart(jwk: JWK): JWK {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = jwk;
  return pub;
}

/** The part of oidc-provider's API used here (the package ships no TypeScript types). */
type ProviderConstructor = new (issuer: string, configuration: Record<string, unknown>) => ProviderInstance;

interface ProviderInstance {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<InteractionDetails>;
  /** Records the result and redirects (303) the browser back to the authorization endpoint. */
  interactionFinished(
    req: IncomingMessage,
    res: ServerResponse,
    result: Record<string, unknown>,
    opts?: { mergeWithLastSubmission?: boolean },
  ): Promise<void>;
  Grant: {
    new (init: { accountId: string; clientId: string }): Grant;
    find(id: string): Promise<Grant | undefined>;
  };
  /** Throws (invalid_client_metadata, invalid_redirect_uri) when a static client's metadata is refused. */
  Client: { find(id: string): Promise<unknown> };
}

interface InteractionDetails {
  uid: string;
  prompt: {
    name: string;
    details: { missingOIDCScope?: string[]; missingOIDCClaims?: string[]; missingResourceScopes?: Record<string, string[]> };
  };
  params: Record<string, unknown>;
  session?: { accountId: string };
  grantId?: string;
}

interface Grant {
  addOIDCScope(scope: string): void;
  addOIDCClaims(claims: string[]): void;
  addResourceScope(resource: string, scope: string): void;
  save(): Promise<string>;
}

async function loadProvider(): Promise<ProviderConstructor> {
  // A specifier in a variable: TypeScript does not look for the types the package lacks.
  const specifier = "oidc-provider";
  const mod = (await import(specifier)) as { default: ProviderConstructor };
  return mod.default;
}
