import { create } from "@bufbuild/protobuf";
import { readFileSync, statSync } from "node:fs";
import { parseSecretKeys } from "../auth/secret-box.js";
import { fromJson, type JsonObject } from "@bufbuild/protobuf";
import {
  type NatsConfig,
  NatsConfigSchema,
  type RelayConfig,
  RelayConfigSchema,
  type RelayLimits,
  RelayLimitsSchema,
} from "../../gen/ferry/config/v1/relay_config_pb.js";
import type { NatsOptions } from "../cluster/nats-options.js";
import type { PeerListen } from "../cluster/cluster-bus.js";
import { type Limits, limitsFrom } from "../limits/limits.js";
import { invalidConfig as invalid, normalise, pickDuration, pickWholeNumber, readConfigFile } from "../../core/config-file.js";
import { msFromDuration } from "../../core/duration.js";
import { optional } from "../../core/optional.js";
import { parseListen } from "./listen-address.js";

/**
 * Defaults for what neither a flag nor the file sets. They live here, not in
 * commander, because a commander default would always beat the file.
 */
export const RELAY_DEFAULTS = {
  listen: "127.0.0.1:8080",
  data: "./data",
  requestTimeoutMs: 100_000,
  keepaliveMs: 15_000,
  graceMs: 30_000,
  clusterDrainDelayMs: 2_000,
  auditRetentionDays: 30,
  auditRequests: true,
  logLevel: "info",
} as const;

const LOG_LEVELS = ["trace", "debug", "info", "warn", "error"];

/** Flag values as commander gives them; each one given overrides the file. */
export interface RelayFlags {
  config?: string;
  listen?: string;
  data?: string;
  tlsCert?: string;
  tlsKey?: string;
  requestTimeout?: string;
  keepalive?: string;
  grace?: string;
  drainDelay?: string;
  trustProxy?: string[];
  baseDomain?: string;
  connectorCa?: string;
  /** --client-certificates; undefined unless given (the file may set it). */
  clientCertificates?: boolean;
  publicHost?: string;
  nodeId?: string;
  auditRetention?: string;
  /** Undefined unless --no-audit-requests was given (commander's implied `true` must not beat the file). */
  auditRequests?: boolean;
  metricsListen?: string;
  /** --admin-listen HOST:PORT. */
  adminListen?: string;
  /** False for --no-public-admin; undefined unless given (the file may set it). */
  publicAdmin?: boolean;
  /** False for --no-console; undefined unless given. */
  console?: boolean;
  logLevel?: string;
  /** Comma-separated NATS server URLs. */
  nats?: string;
  natsUser?: string;
  natsPassword?: string;
  natsToken?: string;
  natsCa?: string;
  natsCert?: string;
  natsKey?: string;
  natsReplicas?: string;
  /** --peer-listen HOST:PORT and --peer-advertise HOST[:PORT]. */
  peerListen?: string;
  peerAdvertise?: string;
  /** --limit NAME=VALUE, repeatable; NAME is a RelayLimits JSON name. */
  limit?: string[];
  /** --secret-key-file FILE. */
  secretKeyFile?: string;
}

/** The relay's settings after merging flags, file, environment and defaults, and validating. */
export interface RelaySettings {
  listen: { host: string; port: number };
  dataDir: string;
  tlsCert?: string;
  tlsKey?: string;
  requestTimeoutMs: number;
  keepaliveMs: number;
  graceMs: number;
  /** How long a draining node keeps its port open after /readyz turned 503 (0 for a single node). */
  drainDelayMs: number;
  trustedProxies: string[];
  /** Host-based routing: {target}.{tenant}.<baseDomain>; lower case, no trailing dot. */
  baseDomain?: string;
  /** PEM CA file for connector client certificates (mTLS); needs TLS. */
  connectorCa?: string;
  /** Ask clients for a certificate on the TLS listener (access rules that accept mtls); needs TLS. */
  clientCertificates?: boolean;
  /** Host name clients and connectors use; the certificate is checked against it. Lower case. */
  publicHost?: string;
  nodeId?: string;
  auditRetentionDays: number;
  auditRequests: boolean;
  metricsListen?: { host: string; port: number };
  /** A second listener for the admin API, the console and /metrics. */
  adminListen?: { host: string; port: number };
  /** The main port serves the admin API, the console and /metrics too (false only with adminListen). */
  publicAdmin: boolean;
  /** The web console at /console/. */
  console: boolean;
  logLevel: string;
  /** FERRY_ADMIN_TOKEN; the first start mints one when absent. */
  adminToken?: string;
  /** Set when NATS servers are given: the relay joins a cluster. */
  nats?: NatsOptions;
  /** Cluster only: where this node takes exchange frames from the others, and how they reach it. */
  peerListen?: PeerListen;
  /** Resource limits: the file's `limits`, each --limit over it, defaults for the rest. */
  limits: Limits;
  /** The operator's secret keys (--secret-key-file, else FERRY_SECRET_KEY); the first seals. */
  secretKeys?: Buffer[];
}

/**
 * Reads --config (YAML or JSON, proto JSON field names of RelayConfig; unknown
 * keys rejected), lays the flags over it, fills in environment and defaults,
 * and validates. Pure apart from reading the files it is told about.
 */
export function resolveRelaySettings(flags: RelayFlags, env: NodeJS.ProcessEnv): RelaySettings {
  const file = flags.config ? readConfigFile(RelayConfigSchema, flags.config) : create(RelayConfigSchema);
  // Errors name a setting the way the user gave it: by its flag, or by the file and key.
  const name: Namer = (flag, fromFlag, key) => (fromFlag || !flags.config ? flag : `${flags.config}: ${key}`);

  const tlsCert = flags.tlsCert ?? (file.tlsCert || undefined);
  const tlsKey = flags.tlsKey ?? (file.tlsKey || undefined);
  if (tlsCert && !tlsKey) {
    throw invalid(`${name("--tls-cert", flags.tlsCert !== undefined, "tlsCert")} needs a private key: give --tls-key (or tlsKey in the config file)`);
  }
  if (tlsKey && !tlsCert) {
    throw invalid(`${name("--tls-key", flags.tlsKey !== undefined, "tlsKey")} needs a certificate: give --tls-cert (or tlsCert in the config file)`);
  }
  // Durations in the file were checked when it was read, so a parse error here is always the flag's.
  const requestTimeoutMs = pickDuration(flags.requestTimeout, msFromDuration(file.requestTimeout), RELAY_DEFAULTS.requestTimeoutMs, "--request-timeout");
  const keepaliveMs = pickDuration(flags.keepalive, msFromDuration(file.keepalive), RELAY_DEFAULTS.keepaliveMs, "--keepalive");
  const graceMs = pickDuration(flags.grace, msFromDuration(file.grace), RELAY_DEFAULTS.graceMs, "--grace");
  const nats = resolveNats(flags, file.nats ?? create(NatsConfigSchema), env, name);
  const drainDelayMs = pickDuration(flags.drainDelay, msFromDuration(file.drainDelay), nats ? RELAY_DEFAULTS.clusterDrainDelayMs : 0, "--drain-delay");
  // Zero would time out every request, or spin the keepalive timer.
  if (requestTimeoutMs <= 0) throw invalid(`${name("--request-timeout", flags.requestTimeout !== undefined, "requestTimeout")} must be more than 0`);
  if (keepaliveMs <= 0) throw invalid(`${name("--keepalive", flags.keepalive !== undefined, "keepalive")} must be more than 0`);
  // The file's uint32 cannot be below 1 once set (0 is unset), so only the flag can be.
  const auditRetentionDays = pickWholeNumber(flags.auditRetention, file.auditRetentionDays, RELAY_DEFAULTS.auditRetentionDays, "--audit-retention");
  if (auditRetentionDays < 1) throw invalid(`--audit-retention "${flags.auditRetention}" is not a whole number >= 1`);
  const logLevel = flags.logLevel ?? (file.logLevel || RELAY_DEFAULTS.logLevel);
  if (!LOG_LEVELS.includes(logLevel)) {
    throw invalid(`${name("--log-level", flags.logLevel !== undefined, "logLevel")} "${logLevel}" is not one of ${LOG_LEVELS.join(", ")}`);
  }
  const metricsListen = flags.metricsListen ?? (file.metricsListen || undefined);
  const connectorCa = flags.connectorCa ?? (file.connectorCa || undefined);
  if (connectorCa && !tlsCert) {
    throw invalid(`${name("--connector-ca", flags.connectorCa !== undefined, "connectorCa")} needs TLS: give --tls-cert and --tls-key too`);
  }
  const clientCertificates = flags.clientCertificates ?? file.clientCertificates;
  if (clientCertificates && !tlsCert) {
    throw invalid(`${name("--client-certificates", flags.clientCertificates !== undefined, "clientCertificates")} needs TLS: give --tls-cert and --tls-key too`);
  }
  const adminListenText = flags.adminListen ?? (file.adminListen || undefined);
  const adminListen = adminListenText === undefined ? undefined : address(adminListenText, name("--admin-listen", flags.adminListen !== undefined, "adminListen"));
  const publicAdmin = flags.publicAdmin ?? file.publicAdmin ?? true;
  if (!publicAdmin && !adminListen) {
    throw invalid(
      `${name("--no-public-admin", flags.publicAdmin !== undefined, "publicAdmin: false")} needs --admin-listen HOST:PORT (or adminListen in the config file): nothing would serve the admin API`,
    );
  }
  const baseDomain = domain(flags.baseDomain ?? (file.baseDomain || undefined), name("--base-domain", flags.baseDomain !== undefined, "baseDomain"));
  const publicHost = host(flags.publicHost ?? (file.publicHost || undefined), name("--public-host", flags.publicHost !== undefined, "publicHost"));
  return {
    listen: address(flags.listen ?? (file.listen || RELAY_DEFAULTS.listen), name("--listen", flags.listen !== undefined, "listen")),
    dataDir: flags.data ?? (file.data || RELAY_DEFAULTS.data),
    ...(tlsCert && tlsKey ? { tlsCert, tlsKey } : {}),
    requestTimeoutMs,
    keepaliveMs,
    graceMs,
    drainDelayMs,
    trustedProxies: flags.trustProxy?.length ? flags.trustProxy : file.trustProxy,
    ...optional("baseDomain", baseDomain),
    ...optional("connectorCa", connectorCa),
    ...(clientCertificates ? { clientCertificates: true } : {}),
    ...optional("publicHost", publicHost),
    ...optional("nodeId", flags.nodeId ?? (file.nodeId || undefined)),
    auditRetentionDays,
    auditRequests: flags.auditRequests ?? file.auditRequests ?? RELAY_DEFAULTS.auditRequests,
    ...optional("metricsListen", metricsListen === undefined ? undefined : address(metricsListen, name("--metrics-listen", flags.metricsListen !== undefined, "metricsListen"))),
    ...optional("adminListen", adminListen),
    publicAdmin,
    console: flags.console ?? file.console ?? true,
    logLevel,
    ...optional("adminToken", env.FERRY_ADMIN_TOKEN || undefined),
    ...optional("nats", nats),
    ...optional("peerListen", resolvePeerListen(flags, file, nats !== undefined, name)),
    limits: limitsFrom(mergeLimits(file.limits, limitFlags(flags.limit ?? []))),
    ...optional("secretKeys", secretKeys(flags, file, env, name)),
  };
}

/** The keys of --secret-key-file (or the file's secretKeyFile), else of FERRY_SECRET_KEY; a bad key stops the start. */
function secretKeys(flags: RelayFlags, file: RelayConfig, env: NodeJS.ProcessEnv, name: Namer): Buffer[] | undefined {
  const path = flags.secretKeyFile ?? (file.secretKeyFile || undefined);
  const from = name("--secret-key-file", flags.secretKeyFile !== undefined, "secretKeyFile");
  let text: string;
  if (path !== undefined) {
    try {
      text = readFileSync(path, "utf8");
    } catch (err) {
      throw invalid(`${from}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  } else if (env.FERRY_SECRET_KEY) {
    text = env.FERRY_SECRET_KEY;
  } else {
    return undefined;
  }
  try {
    return parseSecretKeys(text, path !== undefined ? from : "FERRY_SECRET_KEY");
  } catch (err) {
    throw invalid((err as Error).message);
  }
}

/** --limit NAME=VALUE entries as a RelayLimits message, read like the file's `limits` (sizes, durations). */
function limitFlags(entries: readonly string[]): RelayLimits | undefined {
  if (entries.length === 0) return undefined;
  const json: JsonObject = {};
  for (const entry of entries) {
    const m = /^([A-Za-z_]+)=(.+)$/.exec(entry);
    if (!m) throw invalid(`--limit "${entry}" must be NAME=VALUE, e.g. --limit maxConnectionsPerIp=1000`);
    const value = m[2]!.trim();
    json[m[1]!] = /^\d+$/.test(value) ? Number(value) : value;
  }
  try {
    return fromJson(RelayLimitsSchema, normalise(RelayLimitsSchema, json, "--limit"));
  } catch (e) {
    const names = RelayLimitsSchema.fields.map((f) => f.jsonName).join(", ");
    throw invalid(`${(e as Error).message.replace(/^cannot decode message [\w.]+ from JSON: /, "--limit: ")} (limits: ${names})`);
  }
}

/** The file's limits with each limit a flag sets taken from the flag (unset proto fields are zero). */
function mergeLimits(file: RelayLimits | undefined, flags: RelayLimits | undefined): RelayLimits | undefined {
  if (!flags) return file;
  if (!file) return flags;
  const merged = { ...file } as Record<string, unknown>;
  for (const [key, value] of Object.entries(flags)) {
    if (key !== "$typeName" && value !== undefined && value !== 0 && value !== 0n) merged[key] = value;
  }
  return merged as unknown as RelayLimits;
}

type Namer = (flag: string, fromFlag: boolean, key: string) => string;

/** A setting's value and the name to use for it in errors. */
interface Given<T> {
  value: T;
  name: string;
}

/** NATS options, or undefined when no servers are given (a single node). */
function resolveNats(flags: RelayFlags, file: NatsConfig, env: NodeJS.ProcessEnv, name: Namer): NatsOptions | undefined {
  const given = <T>(flag: T | undefined, fileValue: T | undefined, flagName: string, key: string): Given<T> | undefined =>
    flag !== undefined ? { value: flag, name: flagName } : fileValue ? { value: fileValue, name: name(flagName, false, `nats.${key}`) } : undefined;
  const fromEnv = (variable: string): Given<string> | undefined => {
    const value = env[variable];
    return value ? { value, name: variable } : undefined;
  };

  const user = given(flags.natsUser, file.user, "--nats-user", "user");
  const password = given(flags.natsPassword, file.password, "--nats-password", "password");
  const token = given(flags.natsToken, file.token, "--nats-token", "token");
  const ca = given(flags.natsCa, file.tlsCa, "--nats-ca", "tlsCa");
  const cert = given(flags.natsCert, file.tlsCert, "--nats-cert", "tlsCert");
  const key = given(flags.natsKey, file.tlsKey, "--nats-key", "tlsKey");
  const replicas = given<string | number>(flags.natsReplicas, file.replicas || undefined, "--nats-replicas", "replicas");

  const servers =
    flags.nats !== undefined
      ? flags.nats.split(",").map((s, i) => natsServer(s.trim(), `--nats entry ${i + 1}`))
      : file.servers.map((s, i) => natsServer(s, name("--nats", false, `nats.servers[${i}]`)));
  if (servers.length === 0) {
    // The secrets' variables do not count here: they may be set for every process on the host.
    const stray = [user, password, token, ca, cert, key, replicas].find((g) => g !== undefined);
    if (stray) throw invalid(`${stray.name} needs NATS servers: give --nats URLS (or nats.servers in the config file)`);
    return undefined;
  }

  // Like FERRY_CONNECTOR_KEY for the connector, the variables come after flag and file. They only
  // fill a gap, never clash: the token one is not for a user, the password one not beside a token.
  const tok = token ?? (user ? undefined : fromEnv("FERRY_NATS_TOKEN"));
  const pass = password ?? (tok ? undefined : fromEnv("FERRY_NATS_PASSWORD"));
  if (user && !pass) throw invalid(`${user.name} needs a password: give --nats-password or FERRY_NATS_PASSWORD (or nats.password in the config file)`);
  if (pass && !user) throw invalid(`${pass.name} needs a user: give --nats-user (or nats.user in the config file)`);
  if (tok && user) throw invalid(`${tok.name} and ${user.name} cannot be used together: NATS takes a token, or a user and password`);
  if (cert && !key) throw invalid(`${cert.name} needs a private key: give --nats-key (or nats.tlsKey in the config file)`);
  if (key && !cert) throw invalid(`${key.name} needs a certificate: give --nats-cert (or nats.tlsCert in the config file)`);
  for (const f of [ca, cert, key]) if (f) readableFile(f.value, f.name);
  let replicaCount: number | undefined;
  if (replicas) {
    replicaCount = pickWholeNumber(flags.natsReplicas, file.replicas, 0, replicas.name);
    if (replicaCount < 1 || replicaCount > 5) throw invalid(`${replicas.name} must be between 1 and 5 (got ${replicaCount})`);
  }
  return {
    servers,
    ...optional("user", user?.value),
    ...optional("password", pass?.value),
    ...optional("token", tok?.value),
    ...(ca || cert ? { tls: { ...optional("caFile", ca?.value), ...optional("certFile", cert?.value), ...optional("keyFile", key?.value) } } : {}),
    ...optional("replicas", replicaCount),
  };
}

/** nats://HOST:PORT or tls://HOST:PORT, nothing more; returned without a trailing "/". */
function natsServer(text: string, name: string): string {
  // Credentials in a URL would end up wherever server lists are logged, and in this error.
  if (/^[^/]*\/\/[^/]*@/.test(text)) throw invalid(`${name} must not carry credentials: use --nats-user/--nats-password or --nats-token`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalid(`${name} "${text}" is not a URL: give nats://HOST:PORT or tls://HOST:PORT`);
  }
  if (url.protocol !== "nats:" && url.protocol !== "tls:") throw invalid(`${name} "${text}" must start with nats:// or tls://`);
  if (!url.hostname || !url.port || url.port === "0") throw invalid(`${name} "${text}" needs a host and a port, e.g. nats://10.0.0.5:4222`);
  if ((url.pathname && url.pathname !== "/") || url.search || url.hash) throw invalid(`${name} "${text}" must not have a path, query or fragment`);
  return `${url.protocol}//${url.host}`;
}

/** Fails now, naming the setting, rather than at connect time deep in the NATS client. */
function readableFile(path: string, name: string): void {
  let isFile: boolean;
  try {
    isFile = statSync(path).isFile();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw invalid(`${name} ${path}: ${code === "ENOENT" ? "no such file" : `cannot be read (${code ?? (e as Error).message})`}`);
  }
  if (!isFile) throw invalid(`${name} ${path} is not a file`);
}

/** --peer-listen and --peer-advertise: a cluster's, with an address the other nodes can dial. */
function resolvePeerListen(flags: RelayFlags, file: RelayConfig, clustered: boolean, name: Namer): PeerListen | undefined {
  const listenName = name("--peer-listen", flags.peerListen !== undefined, "peerListen");
  const advertiseName = name("--peer-advertise", flags.peerAdvertise !== undefined, "peerAdvertise");
  const listenText = flags.peerListen ?? (file.peerListen || undefined);
  const advertiseText = flags.peerAdvertise ?? (file.peerAdvertise || undefined);
  if (listenText === undefined) {
    if (advertiseText !== undefined) throw invalid(`${advertiseName} needs --peer-listen HOST:PORT (or peerListen in the config file)`);
    return undefined;
  }
  if (!clustered) throw invalid(`${listenName} is for a cluster: give --nats URLS too (a single node has no peers)`);
  const listen = address(listenText, listenName);
  let advertise: PeerListen["advertise"];
  if (advertiseText !== undefined) {
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+))(?::(\d{1,5}))?$/.exec(advertiseText);
    const port = m?.[3] === undefined ? undefined : Number(m[3]);
    if (!m || (port !== undefined && (port < 1 || port > 65535))) {
      throw invalid(`${advertiseName} "${advertiseText}" must be HOST or HOST:PORT, e.g. 10.0.0.5 or relay-1.internal:7443`);
    }
    advertise = { host: m[1] ?? m[2]!, ...(port === undefined ? {} : { port }) };
  } else {
    if (listen.host === "0.0.0.0" || listen.host === "::" || listen.host === "") {
      throw invalid(`${listenName} "${listenText}" listens on every interface: give --peer-advertise HOST (the address the other nodes dial)`);
    }
    advertise = { host: listen.host };
  }
  return { listen, advertise };
}

function address(text: string, name: string): { host: string; port: number } {
  try {
    return parseListen(text);
  } catch {
    throw invalid(`${name} "${text}" must be HOST:PORT, e.g. 127.0.0.1:8080 or :8080`);
  }
}

/** A DNS name of two or more labels (relay.example.com), lower-cased; no port, scheme or wildcard. */
function domain(value: string | undefined, what: string): string | undefined {
  if (value === undefined) return undefined;
  const name = value.toLowerCase().replace(/\.$/, "");
  const labels = name.split(".");
  if (labels.length < 2 || !labels.every((l) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(l))) {
    throw invalid(`${what} "${value}" is not a domain name like relay.example.com (no scheme, port or wildcard)`);
  }
  return name;
}

/** A host name or IP address as clients type it, without scheme or port. */
function host(value: string | undefined, what: string): string | undefined {
  if (value === undefined) return undefined;
  const name = value.toLowerCase().replace(/\.$/, "");
  const ip = /^[\d.]+$/.test(name) || /^[0-9a-f:]+$/.test(name);
  if (!ip && !name.split(".").every((l) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(l))) {
    throw invalid(`${what} "${value}" is not a host name like relay.example.com (no scheme, port or path)`);
  }
  return name;
}
