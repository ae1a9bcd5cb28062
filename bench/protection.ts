import { fromJson } from "@bufbuild/protobuf";
import type { AdminClient } from "../clients/cli/admin-client.js";
import { AccessPolicySchema } from "../gen/ferry/access/v1/access_policy_pb.js";
import { DEFAULT_AUDIENCE, startOidcProvider } from "../test/helpers/oidc-provider.js";

/**
 * A client access policy in front of a Ferry setup's target, for what the
 * relay's check costs per request: "client-key" requires a client key
 * (Authorization: Bearer fcl_...), "jwt" a token from a real OpenID provider.
 */
export type Protection = "client-key" | "jwt";

/** In the order their rows follow the unprotected setup's, with the words the report uses for them. */
export const PROTECTIONS: Record<Protection, string> = { "client-key": "client key", jwt: "JWT" };

/** A protection in place: the headers every request must carry, and what to stop with the setup. */
export interface Protected {
  headers: Record<string, string>;
  stop(): Promise<void>;
}

/**
 * Puts `protection` on every target of tenant "bench" through `admin` and resolves
 * once `url` (a GET through the node that takes the load) answers 401 without the
 * credential and 200 with it: in a cluster the policy and key reach the other node
 * over the KV bucket, and a measurement before then would measure no check at all.
 */
export async function protect(admin: AdminClient, protection: Protection, url: string): Promise<Protected> {
  if (protection === "client-key") {
    await setPolicy(admin, { rules: [{ name: "bench by key", targets: ["*"], require: ["apiKey"] }] });
    const { secret } = await admin.createClientKey({ tenant: "bench", description: "npm run bench" });
    const headers = { authorization: `Bearer ${secret}` };
    await untilEnforced(url, headers);
    return { headers, stop: async () => {} };
  }
  // A real provider (oidc-provider, RS256, as Entra ID, Keycloak and Auth0 sign by default) in this process:
  // the relay discovers it and fetches its keys once, then every request costs a signature check and the claims.
  const idp = await startOidcProvider();
  try {
    const groups = "bench-users";
    await setPolicy(admin, {
      rules: [{ name: "bench by token", targets: ["*"], require: ["jwt"], jwt: { issuer: idp.issuer, audience: [DEFAULT_AUDIENCE], claims: { groups } } }],
    });
    // Valid for longer than any run; one token for every request, as one client would send.
    const token = await idp.tokenFor("ferry-test", { expiresIn: 3600, claims: { groups } });
    const headers = { authorization: `Bearer ${token}` };
    await untilEnforced(url, headers);
    return { headers, stop: () => idp.close() };
  } catch (e) {
    await idp.close();
    throw e;
  }
}

async function setPolicy(admin: AdminClient, policy: unknown): Promise<void> {
  await admin.setAccessPolicy({ tenant: "bench", policy: fromJson(AccessPolicySchema, policy as never) });
}

async function untilEnforced(url: string, headers: Record<string, string>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    const [without, withIt] = await Promise.all([status(url, {}), status(url, headers)]);
    if (without === 401 && withIt === 200) return;
    last = `${without} without the credential, ${withIt} with it`;
    if (Date.now() > deadline) throw new Error(`${url}: the access policy is not in force after ${timeoutMs / 1000} s (${last})`);
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
