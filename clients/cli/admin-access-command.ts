import { type JsonObject, toJson } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { Command } from "commander";
import { stringify as toYaml } from "yaml";
import { type AccessPolicy, AccessPolicySchema } from "../../gen/ferry/access/v1/access_policy_pb.js";
import {
  ClientKeySchema,
  EndLoginSessionsResponseSchema,
  GetAccessPolicyResponseSchema,
  SetAccessPolicyResponseSchema,
} from "../../gen/ferry/admin/v1/admin_service_pb.js";
import { durationFromMs, parseDuration } from "../../core/duration.js";
import type { FerryError } from "../../core/errors.js";
import { hashPassword } from "../../services/access/basic-auth.js";
import { readPolicyFile } from "./admin-policy-file.js";
import { keyStatus, out, print, table, when } from "./admin-output.js";
import { readPassword } from "./admin-password.js";
import { noun, usage, verb } from "./admin-verbs.js";
import { collect } from "./run.js";

/** `ferry admin access ...` and `ferry admin client-keys ...`: who may reach a tenant's targets. */
export function accessCommands(admin: Command): void {
  const access = noun(admin, "access", "A tenant's client access policy: who may reach its targets (IP rules, client keys, JWTs, mTLS, basic, sign-in, rate limits).")
    .addHelpText(
      "after",
      `
A target that no rule matches is public, as without a policy. The file (YAML or JSON, proto JSON field names,
unknown keys rejected):

  rules:                          # in order; the first rule whose targets (and paths) match applies
    - targets: [crm]
      paths: [/api/]
      allowIps: [203.0.113.0/24]
      require: [apiKey, jwt]      # any one suffices; omitted: no credential needed
      jwt: {issuer: "https://login.example.com/acme", audience: "api://crm", claims: {groups: crm-users}}
      rateLimit: {requests: 100, per: 1s, burst: 200, by: client}
    - targets: [wiki]             # people sign in with a browser (the relay needs --secret-key-file)
      require: [login]
      login: {issuer: "https://login.example.com/acme", clientId: ferry, clientSecretEnv: FERRY_LOGIN_ACME_WIKI,
              allowedEmailDomains: [example.com]}
    - targets: ["*"]
      require: [mtls]
  clientCaPem: |                  # for mtls rules
    -----BEGIN CERTIFICATE-----
    ...
`,
    );
  verb(access, "set <tenant>", "Validate and replace a tenant's policy (an empty file's policy makes every target public again).", async (c, o, [tenant]) => {
    if (typeof o.file !== "string") throw usage("--file is required: the policy file (YAML or JSON)");
    const r = await c.setAccessPolicy({ tenant, policy: readPolicyFile(o.file) });
    print(o, SetAccessPolicyResponseSchema, r, () =>
      isEmpty(r.policy) ? `removed the access policy of tenant ${tenant}: every target is public` : policyText(tenant!, r.policy!, "set", r.updateTime),
    );
  }, (cmd) => cmd.option("--file <file>", "the policy: YAML, or JSON when it ends in .json"));
  verb(access, "get <tenant>", "Show a tenant's policy (as YAML a file for `access set` can hold), or that it has none.", async (c, o, [tenant]) => {
    const r = await c.getAccessPolicy({ tenant });
    print(o, GetAccessPolicyResponseSchema, r, () => (isEmpty(r.policy) ? "no policy: every target is public" : policyText(tenant!, r.policy!, "updated", r.updateTime)));
  });
  verb(access, "end-sessions <tenant>", "End every browser session of the tenant's sign-in (login) rules begun until now: people sign in again.", async (c, o, [tenant]) => {
    const r = await c.endLoginSessions({ tenant, rule: (o.rule as string | undefined) ?? "" });
    print(o, EndLoginSessionsResponseSchema, r, () => `ended the sessions of tenant ${tenant}'s rule${r.rules.length > 1 ? "s" : ""} ${r.rules.join(", ")} begun until ${when(r.updateTime!)}: every node refuses them now`);
  }, (cmd) =>
    cmd.option("--rule <name>", "only this login rule's sessions (default: every login rule of the tenant)").addHelpText("after", `
For someone who has left, or a lost phone: ending sessions at the identity provider alone does not end a session
the relay already gave (a sealed cookie, good until it goes idle or reaches sessionMax). Sets the rules'
login.sessionsNotBefore; the provider still decides who may sign in again.
`),
  );
  access
    .command("hash-password")
    .description("Hash a password for a basic user (basicUsers[].passwordHash); reads it from stdin, or asks on a terminal.")
    .addHelpText("after", `
Never on the command line (ps shows every argument to every local user):

  ferry admin access hash-password                      # asks twice, without echo
  printf %s "$PASSWORD" | ferry admin access hash-password
`)
    .action(async () => {
      out(await hashPassword(await readPassword()));
    });

  const keys = noun(admin, "client-keys", "Client keys of a tenant: the apiKey credential of access rules (apart from connector keys).");
  verb(keys, "create <tenant>", "Create a client key; the secret is printed once.", async (c, o, [tenant]) => {
    const { key, secret } = await c.createClientKey({
      tenant,
      description: (o.description as string | undefined) ?? "",
      targets: targetList(o.targets as string[] | undefined),
      ttl: o.expires === undefined ? undefined : durationFromMs(expiresMs(String(o.expires))),
    });
    if (o.json) return out({ secret, keyId: key!.keyId, ...(toJson(ClientKeySchema, key!) as JsonObject) });
    const scope = key!.targets.length ? `targets ${key!.targets.join(", ")}` : "every target";
    const until = key!.expireTime ? `expires ${when(key!.expireTime)}` : "no expiry";
    out(
      `created client key ${key!.keyId} for tenant ${key!.tenant} (${scope}; ${until})\n\n` +
        `client key (shown once, store it now; clients send it as "Authorization: Bearer <key>"):\n\n  ${secret}\n`,
    );
  }, (cmd) =>
    cmd
      .option("--targets <names>", "only these targets, comma-separated (e.g. crm,erp); default every target", collect)
      .option("--expires <duration>", "the key stops working after this long, e.g. 30d or 12h; default never")
      .option("--description <text>", "a note, e.g. which partner or app the key is for"),
  );
  verb(keys, "list <tenant>", "List a tenant's client keys (never their secrets).", async (c, o, [tenant]) => {
    const { keys: list } = await c.listClientKeys({ tenant });
    if (o.json) return out({ keys: list.map((k) => toJson(ClientKeySchema, k)) });
    out(table([["KEY ID", "STATUS", "TARGETS", "CREATED", "DESCRIPTION"], ...list.map((k) => [k.keyId, keyStatus(k), k.targets.join(",") || "all", when(k.createTime), k.description])]));
  });
  verb(keys, "revoke <tenant> <keyId>", "Revoke a client key; every relay node refuses it within a second.", async (c, o, [tenant, keyId]) => {
    const { key } = await c.revokeClientKey({ tenant, keyId });
    print(o, ClientKeySchema, key!, () => `revoked client key ${key!.keyId} of tenant ${key!.tenant}`);
  });
}

function isEmpty(policy: AccessPolicy | undefined): boolean {
  return !policy || (policy.rules.length === 0 && policy.clientCaPem === "");
}

/** The policy as YAML under a comment line: what `get` prints can be saved and given to `set` again. */
function policyText(tenant: string, policy: AccessPolicy, verbed: string, at: Timestamp | undefined): string {
  const yaml = toYaml(toJson(AccessPolicySchema, policy), { lineWidth: 0 });
  return `# access policy of tenant ${tenant}${at ? `, ${verbed} ${when(at)}` : ""}\n${yaml.trimEnd()}`;
}

/** --targets crm,erp (or repeated): the names, in order, blanks dropped. */
function targetList(given: string[] | undefined): string[] {
  return (given ?? []).flatMap((t) => t.split(",")).map((t) => t.trim()).filter((t) => t !== "");
}

function expiresMs(text: string): number {
  try {
    return parseDuration(text);
  } catch (e) {
    throw usage(`--expires: ${(e as FerryError).message} (e.g. 30d, 12h)`);
  }
}

