import { type DescMessage, type MessageShape, toJson } from "@bufbuild/protobuf";
import { type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";
import { Command } from "commander";
import { ConnectorSchema, KeySchema, TenantSchema } from "../../gen/ferry/admin/v1/admin_service_pb.js";
import { type AdminClient, createAdminClient } from "../admin/admin-client.js";
import { FerryError } from "../sdk/errors.js";

interface Globals {
  relay: string;
  token?: string;
  json?: boolean;
}

/** `ferry admin NOUN VERB ...`: the admin API from a shell, human tables or --json. */
export function adminCommand(): Command {
  const admin = new Command("admin")
    .description("Manage a relay through its admin API.")
    .option("--relay <url>", "relay URL (or FERRY_RELAY)", process.env.FERRY_RELAY ?? "http://127.0.0.1:8080")
    .option("--token <token>", "admin token (or FERRY_ADMIN_TOKEN)")
    .addHelpText("after", "\nExample:\n  ferry admin --relay http://127.0.0.1:8080 --token $T tenants create acme\n");

  const tenants = admin.command("tenants").description("Tenants: one per customer.");
  leaf(tenants, "create <name>", "Create a tenant (name: a DNS label).", async (c, g, [name]) => {
    const { tenant } = await c.createTenant({ name });
    print(g, TenantSchema, tenant!, () => `created tenant ${tenant!.name}`);
  });
  leaf(tenants, "get <name>", "Show one tenant.", async (c, g, [name]) => {
    const { tenant } = await c.getTenant({ name });
    print(g, TenantSchema, tenant!, () => table([["NAME", "CREATED"], [tenant!.name, when(tenant!.createTime)]]));
  });
  leaf(tenants, "list", "List tenants.", async (c, g) => {
    const all = [];
    let pageToken = "";
    do {
      const page = await c.listTenants({ pageToken, pageSize: 1000 });
      all.push(...page.tenants);
      pageToken = page.nextPageToken;
    } while (pageToken);
    if (g.json) return out(JSON.stringify({ tenants: all.map((t) => toJson(TenantSchema, t)) }, null, 2));
    out(table([["NAME", "CREATED"], ...all.map((t) => [t.name, when(t.createTime)])]));
  });
  leaf(tenants, "delete <name>", "Delete a tenant, its keys, and disconnect its connectors.", async (c, g, [name]) => {
    await c.deleteTenant({ name });
    if (g.json) return out(JSON.stringify({ deleted: name }));
    out(`deleted tenant ${name}`);
  });

  const keys = admin.command("keys").description("Connector keys of a tenant.");
  leaf(
    keys,
    "create <tenant>",
    "Create a connector key; the secret is printed once.",
    async (c, g, [tenant], o) => {
      const { key, secret } = await c.createKey({ tenant, description: (o.description as string | undefined) ?? "" });
      if (g.json) return out(JSON.stringify({ tenant: key!.tenant, keyId: key!.keyId, secret }, null, 2));
      out(`created key ${key!.keyId} for tenant ${key!.tenant}\n\nconnector key (shown once, store it now):\n\n  ${secret}\n`);
    },
    (cmd) => cmd.option("--description <text>", "a note, e.g. which site the key is for"),
  );
  leaf(keys, "list <tenant>", "List a tenant's keys (never their secrets).", async (c, g, [tenant]) => {
    const { keys: list } = await c.listKeys({ tenant });
    if (g.json) return out(JSON.stringify({ keys: list.map((k) => toJson(KeySchema, k)) }, null, 2));
    out(
      table([
        ["KEY ID", "STATUS", "CREATED", "DESCRIPTION"],
        ...list.map((k) => [k.keyId, k.revokeTime ? `revoked ${when(k.revokeTime)}` : "valid", when(k.createTime), k.description]),
      ]),
    );
  });
  leaf(keys, "revoke <tenant> <keyId>", "Revoke a key; tunnels using it are closed.", async (c, g, [tenant, keyId]) => {
    const { key } = await c.revokeKey({ tenant, keyId });
    print(g, KeySchema, key!, () => `revoked key ${key!.keyId} of tenant ${key!.tenant}`);
  });

  const connectors = admin.command("connectors").description("Connectors online.");
  leaf(connectors, "list <tenant>", "List a tenant's connectors online.", async (c, g, [tenant]) => {
    const { connectors: list } = await c.listConnectors({ tenant });
    if (g.json) return out(JSON.stringify({ connectors: list.map((x) => toJson(ConnectorSchema, x)) }, null, 2));
    out(
      table([
        ["CONNECTOR", "HOST", "VERSION", "TUNNELS", "IN FLIGHT", "TARGETS", "SINCE"],
        ...list.map((x) => [x.connectorId, x.hostname, x.version, String(x.tunnels), String(x.inFlight), x.targets.join(","), when(x.connectTime)]),
      ]),
    );
  });
  return admin;
}

type Action = (client: AdminClient, globals: Globals, args: string[], opts: Record<string, unknown>) => Promise<void>;

/** Adds a verb with --json and wires it to a client built from the admin command's options. */
function leaf(parent: Command, spec: string, description: string, action: Action, extra?: (c: Command) => Command): void {
  const cmd = parent.command(spec).description(description).option("--json", "print JSON for scripts");
  extra?.(cmd);
  cmd.action(async (...params: unknown[]) => {
    const self = params[params.length - 1] as Command;
    const opts = self.optsWithGlobals() as Globals & Record<string, unknown>;
    const token = opts.token ?? process.env.FERRY_ADMIN_TOKEN;
    if (!token) {
      throw new FerryError("unauthenticated", "missing_token", "no admin token: pass --token or set FERRY_ADMIN_TOKEN");
    }
    let relay: URL;
    try {
      relay = new URL(opts.relay);
    } catch {
      throw new FerryError("invalid_argument", "invalid_relay", `--relay "${opts.relay}" is not a URL`);
    }
    await action(createAdminClient(relay.origin, token), opts, self.args, opts);
  });
}

function print<D extends DescMessage>(g: Globals, schema: D, message: MessageShape<D>, human: () => string): void {
  out(g.json ? JSON.stringify(toJson(schema, message), null, 2) : human());
}

function out(text: string): void {
  process.stdout.write(`${text}\n`);
}

function when(ts: Timestamp | undefined): string {
  return ts ? timestampDate(ts).toISOString().replace(/\.\d+Z$/, "Z") : "";
}

/** Left-aligned columns, two spaces apart. */
function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n");
}
