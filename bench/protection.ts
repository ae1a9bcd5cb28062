import { fromJson } from "@bufbuild/protobuf";
import type { AdminClient } from "../clients/cli/admin-client.js";
import { AccessPolicySchema } from "../gen/ferry/access/v1/access_policy_pb.js";
import { DEFAULT_AUDIENCE, startOidcProvider, type TestOidcProvider } from "../test/helpers/oidc-provider.js";

/**
 * A client access policy in front of a Ferry setup's target, for what the
 * relay's check costs per request: "client-key" requires a client key
 * (Authorization: Bearer fcl_...), "jwt" a token from a real OpenID provider.
 * "watched" is no policy but one WatchExchanges watcher reading every exchange
 * (the console's live traffic), for what a summary per exchange costs.
 */
export type Protection = "client-key" | "jwt" | "watched";

/** In the order their rows follow the unprotected setup's, with the words the report uses for them. */
export const PROTECTIONS: Record<Protection, string> = { "client-key": "client key", jwt: "JWT", watched: "one traffic watcher" };

/** Switches a running setup's tenant "bench" between no policy and each protection. */
export interface Protections {
  /** Puts `protection` in force (undefined: no policy at all) and resolves with the headers every request must then carry. */
  use(protection: Protection | undefined): Promise<Record<string, string>>;
  /** With "watched" in force: what its watcher has received so far. */
  watched(): { exchanges: number; dropped: number } | undefined;
  stop(): Promise<void>;
}

const GROUPS = "bench-users";

/**
 * Policies set through `admin`, each in force once `url` (a GET through the
 * node that takes the load) answers as it should: 401 without the credential
 * and 200 with it, or 200 without anything for no policy. In a cluster the
 * policy and key reach the other node over the KV bucket, and a measurement
 * before then would measure the wrong policy. Each protection's client key or
 * provider and token are made on its first use and kept: switching costs one policy write.
 */
export function createProtections(admin: AdminClient, url: string): Protections {
  let idp: Promise<TestOidcProvider> | undefined;
  type Made = { policy: unknown; headers: Record<string, string> };
  const make: Record<Exclude<Protection, "watched">, () => Promise<Made>> = {
    "client-key": async () => {
      const { secret } = await admin.createClientKey({ tenant: "bench", description: "npm run bench" });
      return { policy: { rules: [{ name: "bench by key", targets: ["*"], require: ["apiKey"] }] }, headers: { authorization: `Bearer ${secret}` } };
    },
    // A real provider (oidc-provider, RS256, as Entra ID, Keycloak and Auth0 sign by default) in this process:
    // the relay discovers it and fetches its keys once, then every request costs a signature check and the claims.
    jwt: async () => {
      idp = startOidcProvider();
      const provider = await idp;
      // Valid for longer than any run; one token for every request, as one client would send.
      const token = await provider.tokenFor("ferry-test", { expiresIn: 3600, claims: { groups: GROUPS } });
      const rule = { name: "bench by token", targets: ["*"], require: ["jwt"], jwt: { issuer: provider.issuer, audience: [DEFAULT_AUDIENCE], claims: { groups: GROUPS } } };
      return { policy: { rules: [rule] }, headers: { authorization: `Bearer ${token}` } };
    },
  };
  const made = new Map<Exclude<Protection, "watched">, Promise<Made>>();
  const madeFor = (p: Exclude<Protection, "watched">) => {
    if (!made.has(p)) made.set(p, make[p]());
    return made.get(p)!;
  };
  let watcher: Watcher | undefined;
  return {
    async use(protection) {
      const policyOf = protection && protection !== "watched" ? protection : undefined;
      const { policy, headers } = policyOf ? await madeFor(policyOf) : { policy: { rules: [] }, headers: {} };
      if (protection !== "watched" && watcher) {
        watcher.stop();
        watcher = undefined;
      }
      await admin.setAccessPolicy({ tenant: "bench", policy: fromJson(AccessPolicySchema, policy as never) });
      if (protection === "watched") watcher ??= await startWatcher(admin);
      await untilInForce(url, headers, policyOf !== undefined);
      return headers;
    },
    watched: () => watcher?.counts(),
    async stop() {
      watcher?.stop();
      await (await idp?.catch(() => undefined))?.close();
    },
  };
}

async function untilInForce(url: string, headers: Record<string, string>, guarded: boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [without, withIt] = await Promise.all([status(url, {}), status(url, headers)]);
    if (without === (guarded ? 401 : 200) && withIt === 200) return;
    if (Date.now() > deadline) {
      throw new Error(`${url}: the ${guarded ? "access policy" : "empty policy"} is not in force after ${timeoutMs / 1000} s (${without} without the credential, ${withIt} with it)`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function status(url: string, headers: Record<string, string>): Promise<number | string> {
  try {
    const res = await fetch(url, { headers });
    await res.arrayBuffer();
    return res.status;
  } catch (e) {
    return (e as Error).message;
  }
}

interface Watcher {
  counts(): { exchanges: number; dropped: number };
  stop(): void;
}

/** A WatchExchanges call that reads and forgets every exchange, as a console tab does; resolves once it is in place. */
async function startWatcher(admin: AdminClient): Promise<Watcher> {
  const abort = new AbortController();
  const seen = { exchanges: 0, dropped: 0 };
  let ready!: () => void;
  const inPlace = new Promise<void>((resolve) => (ready = resolve));
  void (async () => {
    for await (const m of admin.watchExchanges({}, { signal: abort.signal })) {
      seen.exchanges += m.exchanges.length;
      seen.dropped += Number(m.dropped);
      ready();
    }
  })().catch(() => ready());
  await inPlace;
  return { counts: () => ({ ...seen }), stop: () => abort.abort() };
}
