import { create, type MessageInitShape, toJson } from "@bufbuild/protobuf";
import { type Duration, type Timestamp, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Command } from "commander";
import {
  AuditEventSchema,
  ConnectorSchema,
  KeySchema,
  NodeSchema,
  type StatsEntry,
  StatsEntrySchema,
  TargetSchema,
  type Tenant,
  TenantSchema,
  TokenSchema,
  type TrafficStats,
} from "../../gen/ferry/admin/v1/admin_service_pb.js";
import type { AdminClient } from "./admin-client.js";
import { Code, ConnectError } from "@connectrpc/connect";
import { normalizeCertSerial } from "../../core/cert-serial.js";
import { durationFromMs, formatDuration, msFromDuration, parseDuration } from "../../core/duration.js";
import { formatSize, parseSize } from "../../core/size.js";
import { accessCommands } from "./admin-access-command.js";
import { trafficCommands } from "./admin-traffic-command.js";
import { keyStatus, out, print, table, when } from "./admin-output.js";
import { noun, type Opts, usage, verb } from "./admin-verbs.js";
import { collect } from "./run.js";

/** `ferry admin NOUN VERB ...`: every admin RPC from a shell, as tables or --json. */
export function adminCommand(): Command {
  const admin = new Command("admin")
    .description("Manage a relay through its admin API.")
    .option("--relay <url>", "relay URL (or FERRY_RELAY)", process.env.FERRY_RELAY ?? "http://127.0.0.1:8080")
    .option("--token-file <file>", "file holding the admin token (or set FERRY_TOKEN)")
    .option("--token <token>", "admin token on the command line (visible in ps: prefer FERRY_TOKEN or --token-file)")
    .addHelpText(
      "after",
      `
Examples:
  export FERRY_RELAY=https://relay.example.com FERRY_TOKEN=fat_...   # or --token-file ~/.ferry/token (chmod 600)
  ferry admin tenants create acme
  ferry admin --token-file /etc/ferry/admin.token keys create acme --json
  ferry admin tenants update acme --deny-cert-serial 0A:1B:2C:3D   # a connector certificate no longer accepted
  ferry admin access set acme --file policy.yaml                   # who may reach acme's targets
  ferry admin client-keys create acme --targets crm --expires 30d --json

Exit codes: 0 done, 1 usage error, 2 the relay refused or failed the call (its code and message on stderr).
`,
    );

  const tenants = noun(admin, "tenants", "Tenants: one per customer, with their limits.");
  verb(tenants, "create <name>", "Create a tenant (name: a DNS label).", async (c, o, [name]) => {
    const { tenant } = await c.createTenant({ name, settings: create(TenantSchema, settings(o).values) });
    print(o, TenantSchema, tenant!, () => `created tenant ${tenant!.name}`);
  }, settingsFlags);
  verb(tenants, "get <name>", "Show one tenant and its settings.", async (c, o, [name]) => {
    const { tenant } = await c.getTenant({ name });
    print(o, TenantSchema, tenant!, () => tenantDetail(tenant!));
  });
  verb(tenants, "list", "List tenants.", async (c, o) => {
    const all = [];
    let pageToken = "";
    do {
      const page = await c.listTenants({ pageToken, pageSize: 1000 });
      all.push(...page.tenants);
      pageToken = page.nextPageToken;
    } while (pageToken);
    if (o.json) return out({ tenants: all.map((t) => toJson(TenantSchema, t)) });
    out(table([["NAME", "STATUS", "DISPLAY NAME", "CREATED"], ...all.map((t) => [t.name, t.disabled ? "disabled" : "enabled", t.displayName, when(t.createTime)])]));
  });
  verb(tenants, "update <name>", "Change a tenant's settings (only the flags given).", async (c, o, [name]) => {
    const { values, paths } = settings(o);
    const serials = await deniedSerials(c, o, name!);
    if (serials) {
      values.deniedCertificateSerials = serials;
      paths.push("denied_certificate_serials");
    }
    if (paths.length === 0) throw usage("nothing to change: give at least one setting flag (see --help)");
    const { tenant } = await c.updateTenant({ tenant: create(TenantSchema, { ...values, name: name! }), updateMask: { paths } });
    print(o, TenantSchema, tenant!, () => `updated tenant ${tenant!.name}: ${paths.join(", ")}`);
  }, (cmd) =>
    settingsFlags(cmd)
      .option("--deny-cert-serial <serial>", "refuse the connector client certificate with this serial (hex, e.g. from openssl x509 -serial; repeatable)", collect)
      .option("--allow-cert-serial <serial>", "take a serial off the deny list again (repeatable)", collect),
  );
  verb(tenants, "delete <name>", "Delete a tenant, its keys, client keys and access policy, and disconnect its connectors.", async (c, o, [name]) => {
    await c.deleteTenant({ name });
    out(o.json ? { deleted: name } : `deleted tenant ${name}`);
  });

  const keys = noun(admin, "keys", "Connector keys of a tenant.");
  verb(keys, "create <tenant>", "Create a connector key; the secret is printed once.", async (c, o, [tenant]) => {
    const { key, secret } = await c.createKey({ tenant, description: (o.description as string | undefined) ?? "" });
    if (o.json) return out({ tenant: key!.tenant, keyId: key!.keyId, secret });
    out(`created key ${key!.keyId} for tenant ${key!.tenant}\n\nconnector key (shown once, store it now):\n\n  ${secret}\n`);
  }, (cmd) => cmd.option("--description <text>", "a note, e.g. which site the key is for"));
  verb(keys, "list <tenant>", "List a tenant's keys (never their secrets).", async (c, o, [tenant]) => {
    const { keys: list } = await c.listKeys({ tenant });
    if (o.json) return out({ keys: list.map((k) => toJson(KeySchema, k)) });
    out(table([["KEY ID", "STATUS", "CREATED", "DESCRIPTION"], ...list.map((k) => [k.keyId, keyStatus(k), when(k.createTime), k.description])]));
  });
  verb(keys, "revoke <tenant> <keyId>", "Revoke a key; tunnels using it are closed.", async (c, o, [tenant, keyId]) => {
    const { key } = await c.revokeKey({ tenant, keyId });
    print(o, KeySchema, key!, () => `revoked key ${key!.keyId} of tenant ${key!.tenant}`);
  });
  verb(keys, "rotate <tenant> <keyId>", "Mint a successor key; the old one works for --grace more.", async (c, o, [tenant, keyId]) => {
    const grace = o.grace === undefined ? undefined : durationFromMs(parseDuration(String(o.grace)));
    const r = await c.rotateKey({ tenant, keyId, grace, description: (o.description as string | undefined) ?? "" });
    if (o.json) return out({ tenant, keyId: r.key!.keyId, secret: r.secret, oldKey: toJson(KeySchema, r.oldKey!) });
    const until = r.oldKey!.expireTime ? `works until ${when(r.oldKey!.expireTime)}` : "is revoked";
    out(`created key ${r.key!.keyId}; old key ${keyId} ${until}\n\nnew connector key (shown once, store it now):\n\n  ${r.secret}\n`);
  }, (cmd) =>
    cmd.option("--grace <duration>", "how long the old key keeps working (0 = revoke now)", "24h").option("--description <text>", "note for the new key"),
  );

  const connectors = noun(admin, "connectors", "Connectors online.");
  verb(connectors, "list <tenant>", "List a tenant's connectors online.", async (c, o, [tenant]) => {
    const { connectors: list } = await c.listConnectors({ tenant });
    if (o.json) return out({ connectors: list.map((x) => toJson(ConnectorSchema, x)) });
    out(
      table([
        ["CONNECTOR", "HOST", "VERSION", "TUNNELS", "IN FLIGHT", "RTT", "STATE", "UNTIL", "TARGETS", "SINCE"],
        ...list.map((x) => [
          x.connectorId,
          x.hostname,
          x.version,
          String(x.tunnels),
          String(x.inFlight),
          rtt(x.lastPingRtt),
          // Paused by its local admin; UNTIL: the end of its --for window.
          x.paused ? "paused" : "open",
          when(x.leaveTime) || "-",
          x.targets.join(","),
          when(x.connectTime),
        ]),
      ]),
    );
  });
  verb(connectors, "disconnect <tenant> <connectorId>", "Close a connector's tunnels (it reconnects unless its key is gone).", async (c, o, [tenant, connectorId]) => {
    const { tunnels } = await c.disconnectConnector({ tenant, connectorId, reason: (o.reason as string | undefined) ?? "" });
    out(o.json ? { tunnels } : `closed ${tunnels} tunnel(s) of connector ${connectorId}`);
  }, (cmd) => cmd.option("--reason <text>", "why, for the audit log and the connector's log"));

  const targets = noun(admin, "targets", "Targets a tenant's connectors serve.");
  verb(targets, "list <tenant>", "List the targets of a tenant's live connectors.", async (c, o, [tenant]) => {
    const { targets: list } = await c.listTargets({ tenant });
    if (o.json) return out({ targets: list.map((t) => toJson(TargetSchema, t)) });
    out(table([["TARGET", "CONNECTORS", "TUNNELS", "ALLOWED"], ...list.map((t) => [t.name, String(t.connectors), String(t.tunnels), t.allowed ? "yes" : "no"])]));
  });

  const stats = noun(admin, "stats", "Traffic statistics.");
  verb(stats, "get <tenant>", "Requests, errors, bytes and latency of a tenant, per target.", async (c, o, [tenant]) => {
    const { entries } = await c.getStats({ tenant, target: (o.target as string | undefined) ?? "" });
    if (o.json) return out({ entries: entries.map((e) => toJson(StatsEntrySchema, e)) });
    out(statsTable(entries));
  }, (cmd) => cmd.option("--target <name>", "one target only"));

  const audit = noun(admin, "audit", "The audit log: admin changes, connector events, request summaries.");
  verb(audit, "list", "List audit events, newest first.", async (c, o) => {
    const limit = o.limit === undefined ? 100 : positive(String(o.limit), "--limit");
    const events = [];
    let pageToken = "";
    do {
      const page = await rationed(() => c.listAuditEvents({
        tenant: (o.tenant as string | undefined) ?? "",
        actor: (o.actor as string | undefined) ?? "",
        action: (o.action as string | undefined) ?? "",
        startTime: o.since === undefined ? undefined : timeArg(String(o.since), "--since"),
        endTime: o.until === undefined ? undefined : timeArg(String(o.until), "--until"),
        pageSize: Math.min(1000, limit - events.length),
        pageToken,
      }));
      events.push(...page.events);
      pageToken = page.nextPageToken;
    } while (pageToken && events.length < limit);
    if (o.json) return out({ events: events.map((e) => toJson(AuditEventSchema, e)) });
    out(table([["TIME", "ACTION", "ACTOR", "TENANT", "DETAILS"], ...events.map((e) => [when(e.time), e.action, e.actor, e.tenant, JSON.stringify(e.details ?? {})])]));
  }, (cmd) =>
    cmd
      .option("--tenant <name>", "only this tenant")
      .option("--actor <actor>", "only this actor, e.g. admin:bootstrap")
      .option("--action <prefix>", "only actions starting with this, e.g. key. or request")
      .option("--since <time>", "ISO time, or a duration ago (e.g. 1h)")
      .option("--until <time>", "ISO time, or a duration ago")
      .option("--limit <n>", "most events to print", "100"),
  );

  const tokens = noun(admin, "tokens", "Admin tokens and their roles.");
  verb(tokens, "create", "Create an admin token; the secret is printed once.", async (c, o) => {
    if (!o.role) throw usage("--role is required: admin, viewer or tenant:<name>");
    const { token, secret } = await c.createToken({ role: String(o.role), description: (o.description as string | undefined) ?? "" });
    if (o.json) return out({ tokenId: token!.tokenId, role: token!.role, secret });
    out(`created ${token!.role} token ${token!.tokenId}\n\nadmin token (shown once, store it now):\n\n  ${secret}\n`);
  }, (cmd) => cmd.option("--role <role>", "admin (everything), viewer (read only) or tenant:<name> (one tenant)").option("--description <text>", "a note"));
  verb(tokens, "list", "List admin tokens (never their secrets).", async (c, o) => {
    const { tokens: list } = await c.listTokens({});
    if (o.json) return out({ tokens: list.map((t) => toJson(TokenSchema, t)) });
    out(table([["TOKEN ID", "ROLE", "STATUS", "CREATED", "DESCRIPTION"], ...list.map((t) => [t.tokenId, t.role, t.revokeTime ? `revoked ${when(t.revokeTime)}` : "valid", when(t.createTime), t.description])]));
  });
  verb(tokens, "revoke <tokenId>", "Revoke an admin token at once.", async (c, o, [tokenId]) => {
    const { token } = await c.revokeToken({ tokenId });
    print(o, TokenSchema, token!, () => `revoked token ${token!.tokenId}`);
  });

  const nodes = noun(admin, "nodes", "Relay nodes.");
  verb(nodes, "list", "List relay nodes.", async (c, o) => {
    const { nodes: list } = await c.listNodes({});
    if (o.json) return out({ nodes: list.map((n) => toJson(NodeSchema, n)) });
    out(table([["NODE", "VERSION", "ADDRESS", "TUNNELS", "IN FLIGHT", "STATE", "STARTED"], ...list.map((n) => [n.nodeId, n.version, n.address, String(n.tunnels), String(n.inFlight), n.draining ? "draining" : "serving", when(n.startTime)])]));
  });

  accessCommands(admin);
  trafficCommands(admin);
  return admin;
}

/**
 * The tenant's deny list after --deny-cert-serial and --allow-cert-serial, or
 * undefined when neither is given. Read, changed and written back whole
 * (the API sets lists as a whole): two operators changing it at the same
 * moment can lose one change; `tenants get` shows the result.
 */
async function deniedSerials(c: AdminClient, o: Opts, name: string): Promise<string[] | undefined> {
  const deny = (o.denyCertSerial as string[] | undefined) ?? [];
  const allow = (o.allowCertSerial as string[] | undefined) ?? [];
  if (deny.length === 0 && allow.length === 0) return undefined;
  const canonical = (flag: string) => (text: string) => {
    const serial = normalizeCertSerial(text);
    if (serial === undefined) throw usage(`${flag} "${text}" is not a certificate serial (hex, e.g. 0A:1B:2C or 0A1B2C)`);
    return serial;
  };
  const add = deny.map(canonical("--deny-cert-serial"));
  const remove = new Set(allow.map(canonical("--allow-cert-serial")));
  const both = add.find((s) => remove.has(s));
  if (both) throw usage(`--deny-cert-serial and --allow-cert-serial both name ${both}`);
  const { tenant } = await c.getTenant({ name });
  const current = tenant?.deniedCertificateSerials ?? [];
  return [...new Set([...current, ...add])].filter((s) => !remove.has(s));
}

/**
 * Runs an audit query, waiting out the relay's per-token rate limit
 * (ResourceExhausted) a few times: paging through a large log with a narrow
 * filter can take more calls than a minute allows.
 */
async function rationed<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 0, waitMs = 2_000; ; attempt++, waitMs *= 2) {
    try {
      return await call();
    } catch (err) {
      if (!(err instanceof ConnectError && err.code === Code.ResourceExhausted) || attempt >= 4) throw err;
      process.stderr.write(`ferry: the relay limits audit queries (${err.rawMessage}); waiting ${waitMs / 1000}s\n`);
      await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
  }
}

/** The settings part of a Tenant, as create() takes it. */
type TenantSettingsInit = Omit<MessageInitShape<typeof TenantSchema>, "name" | "createTime" | "updateTime" | "$typeName">;

/** Tenant settings flags, shared by create and update. */
function settingsFlags(cmd: Command): Command {
  return cmd
    .option("--display-name <text>", "human-readable name")
    .option("--description <text>", "operator's note")
    .option("--disable", "refuse its traffic (403) and disconnect its connectors")
    .option("--enable", "accept its traffic again")
    .option("--request-timeout <duration>", "time a target has to start responding (\"default\": the relay's)")
    .option("--max-body <size>", "largest request body, e.g. 10MB (0: no limit)")
    .option("--max-concurrent <n>", "most exchanges at once (0: no limit)")
    .option("--allow-target <name>", "only these targets may be reached (repeatable)", collect)
    .option("--allow-all-targets", "any target may be reached");
}

/** The settings the flags give, and their update-mask paths. */
function settings(o: Opts): { values: TenantSettingsInit; paths: string[] } {
  const values: TenantSettingsInit = {};
  const paths: string[] = [];
  const set = <K extends keyof TenantSettingsInit>(path: string, key: K, value: TenantSettingsInit[K]) => {
    values[key] = value;
    paths.push(path);
  };
  if (o.displayName !== undefined) set("display_name", "displayName", String(o.displayName));
  if (o.description !== undefined) set("description", "description", String(o.description));
  if (o.disable && o.enable) throw usage("--disable and --enable contradict each other");
  if (o.disable || o.enable) set("disabled", "disabled", Boolean(o.disable));
  if (o.requestTimeout !== undefined) {
    const t = String(o.requestTimeout);
    set("request_timeout", "requestTimeout", t === "default" ? undefined : durationFromMs(parseDuration(t)));
  }
  if (o.maxBody !== undefined) set("max_request_body_bytes", "maxRequestBodyBytes", parseSize(String(o.maxBody)));
  if (o.maxConcurrent !== undefined) set("max_concurrent_exchanges", "maxConcurrentExchanges", positive(String(o.maxConcurrent), "--max-concurrent", true));
  if (o.allowTarget && o.allowAllTargets) throw usage("--allow-target and --allow-all-targets contradict each other");
  if (o.allowTarget) set("allowed_targets", "allowedTargets", o.allowTarget as string[]);
  if (o.allowAllTargets) set("allowed_targets", "allowedTargets", []);
  return { values, paths };
}

function tenantDetail(t: Tenant): string {
  return table([
    ["NAME", t.name],
    ["STATUS", t.disabled ? "disabled" : "enabled"],
    ["DISPLAY NAME", t.displayName],
    ["DESCRIPTION", t.description],
    ["REQUEST TIMEOUT", t.requestTimeout ? formatDuration(msFromDuration(t.requestTimeout) ?? 0) : "relay default"],
    ["MAX BODY", t.maxRequestBodyBytes ? formatSize(t.maxRequestBodyBytes) : "no limit"],
    ["MAX CONCURRENT", t.maxConcurrentExchanges ? String(t.maxConcurrentExchanges) : "no limit"],
    ["ALLOWED TARGETS", t.allowedTargets.length ? t.allowedTargets.join(", ") : "all"],
    ["DENIED CERT SERIALS", t.deniedCertificateSerials.length ? t.deniedCertificateSerials.join(", ") : "none"],
    ["ID", t.id],
    ["CREATED", when(t.createTime)],
    ["UPDATED", when(t.updateTime)],
  ]);
}

function statsTable(entries: StatsEntry[]): string {
  const row = (e: StatsEntry, period: string, s: TrafficStats | undefined) => [
    e.target || "(all)",
    period,
    String(s?.requests ?? 0n),
    String(s?.clientErrors ?? 0n),
    String(s?.serverErrors ?? 0n),
    String(Object.values(s?.relayErrors ?? {}).reduce((a, b) => a + b, 0n)),
    formatSize(s?.bytesIn ?? 0n),
    formatSize(s?.bytesOut ?? 0n),
    ms(s?.latencyP50),
    ms(s?.latencyP95),
    ms(s?.latencyP99),
  ];
  return table([
    ["TARGET", "PERIOD", "REQUESTS", "4XX", "5XX", "RELAY ERR", "IN", "OUT", "P50", "P95", "P99"],
    ...entries.flatMap((e) => [row(e, `last ${formatDuration(msFromDuration(e.recentWindow) ?? 0)}`, e.recent), row(e, "since start", e.total)]),
  ]);
}

function ms(d: Duration | undefined): string {
  return d ? formatDuration(msFromDuration(d) ?? 0) : "";
}

function rtt(d: Duration | undefined): string {
  return d ? formatDuration(msFromDuration(d) ?? 0) : "-";
}

/** "2026-11-23T10:00:00Z" or a duration ago ("1h"). */
function timeArg(text: string, flag: string): Timestamp {
  const date = /^\d{4}-\d\d-\d\d/.test(text) ? new Date(text) : new Date(Date.now() - parseDuration(text));
  if (Number.isNaN(date.getTime())) throw usage(`${flag} "${text}" is not a time (ISO 8601) or a duration`);
  return timestampFromDate(date);
}

function positive(text: string, flag: string, allowZero = false): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < (allowZero ? 0 : 1)) throw usage(`${flag} "${text}" is not a whole number${allowZero ? "" : " >= 1"}`);
  return n;
}

