import { randomBytes, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, type JWK } from "jose";

/** Signing algorithms the test provider can use (the ones the verifier accepts by default). */
export type TestSigningAlg = "RS256" | "PS256" | "ES256" | "EdDSA";

export interface OidcProviderOptions {
  /** Client ids that may get tokens by client credentials; default ["ferry-test"]. */
  clients?: string[];
  /** The access tokens' signing algorithm; default RS256. */
  alg?: TestSigningAlg;
}

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
 */
export async function startOidcProvider(opts: OidcProviderOptions = {}): Promise<TestOidcProvider> {
  const alg = opts.alg ?? "RS256";
  const clients = opts.clients ?? ["ferry-test"];
  const secrets = new Map(clients.map((id) => [id, randomBytes(24).toString("base64url")]));
  const privateKeys: JWK[] = [];

  let handle: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push((req.url ?? "").split("?")[0]!);
    if (handle) handle(req, res);
    else res.writeHead(503).end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const build = async () => {
    const Provider = await loadProvider();
    const signingKid = privateKeys[0]!.kid!;
    const provider = new Provider(issuer, {
      adapter: memoryAdapter(),
      clients: clients.map((id) => ({
        client_id: id,
        client_secret: secrets.get(id)!,
        grant_types: ["client_credentials"],
        redirect_uris: [],
        response_types: [],
        // The client's default (RS256) must be a key the provider has, or it refuses the client.
        id_token_signed_response_alg: alg,
      })),
      jwks: { keys: privateKeys },
      ttl: { ClientCredentials: 300 },
      cookies: { keys: [randomBytes(16).toString("hex")] },
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: () => DEFAULT_AUDIENCE,
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
    handle = provider.callback();
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
 * is the same but warns on every start). JWT access tokens need little of it.
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
    async findByUid() {
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
    async revokeByGrantId() {}
  };
}

/** The public members of a private JWK (RSA, EC or OKP). */
function publicPart(jwk: JWK): JWK {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = jwk;
  return pub;
}

/** The part of oidc-provider's API used here (the package ships no TypeScript types). */
type ProviderConstructor = new (
  issuer: string,
  configuration: Record<string, unknown>,
) => { callback(): (req: IncomingMessage, res: ServerResponse) => void };

async function loadProvider(): Promise<ProviderConstructor> {
  // A specifier in a variable: TypeScript does not look for the types the package lacks.
  const specifier = "oidc-provider";
  const mod = (await import(specifier)) as { default: ProviderConstructor };
  return mod.default;
}
