import { create } from "@bufbuild/protobuf";
import { isConnectorKey } from "../../core/connector-key.js";
import { othersCanRead, readSecretFile } from "../../core/secret-file.js";
import { accessSync, constants } from "node:fs";
import { type ConnectorConfig, ConnectorConfigSchema, TargetConfigSchema } from "../../gen/ferry/config/v1/connector_config_pb.js";
import { invalidConfig as invalid, pickDuration, pickWholeNumber, readConfigFile } from "../../core/config-file.js";
import { msFromDuration } from "../../core/duration.js";
import { shortId } from "../../core/exchange/ids.js";
import { isDnsLabel } from "../../core/names.js";
import { LOG_LEVELS } from "../../core/logger.js";
import { type CorsPolicy, corsPolicy } from "./cors.js";

/** A validated target: the only places the connector will ever send requests. */

/** Longest --for window: the relay accepts leave times up to 366 days ahead. */
const MAX_RUN_FOR_MS = 365 * 86_400_000;
export interface TargetSpec {
  name: string;
  /** http:// or https://, host and port (an h2c:// target's origin is http://). */
  origin: string;
  /** Path prefix with no trailing "/" ("" for the root). */
  basePath: string;
  /** "http1": HTTP/1.1; "h2c": cleartext HTTP/2 by prior knowledge; "tls": HTTP/2 or HTTP/1.1, as ALPN decides. */
  transport: "http1" | "h2c" | "tls";
  /** Host the target sees: its own (target), the client's (original), or a fixed one. */
  host: { kind: "target" } | { kind: "original" } | { kind: "fixed"; value: string };
  /** Cross-origin policy; undefined leaves CORS to the target. */
  cors: CorsPolicy | undefined;
  /** Path prefixes clients may reach ("/auth/"); empty: every path. Checked at the connector, whatever the relay allows. */
  allowedPaths: string[];
  /** Methods clients may use, upper case; empty: every method. */
  allowedMethods: string[];
  /**
   * Only requests with a valid X-Ferry-Identity from the relay reach the target (identity-check.ts); the rest
   * are refused at the connector. Set only when true: the config file is the one place to ask for it.
   */
  requireIdentity?: true;
}

/** The connector's settings after merging file, flags and defaults, and validating. */
export interface ConnectorSettings {
  relays: URL[];
  key: string;
  targets: TargetSpec[];
  tunnels: number;
  id: string;
  maxConcurrentExchanges: number;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  graceMs: number;
  logLevel: string;
  /** HTTP proxy for the tunnels from --proxy or the file; undefined: HTTPS_PROXY/HTTP_PROXY/NO_PROXY decide. */
  proxy?: URL;
  /** PEM CA file to trust for the relays instead of the system's. */
  ca?: string;
  /** Accept any relay certificate (tests only; warned at every connect). */
  insecureSkipVerify: boolean;
  /** Disconnect and exit after this long (--for). */
  runForMs?: number;
  /** JSON-lines file recording every exchange forwarded. */
  auditLog?: string;
  /** Loopback address of the local control endpoint (pause/resume/status). */
  controlListen?: { host: string; port: number };
  /** Client certificate and key for relays that authenticate connectors by mTLS. */
  tlsCert?: string;
  tlsKey?: string;
}

/** Flag values; each one given overrides the file. */
export interface ConnectorFlags {
  config?: string;
  relay?: string[];
  key?: string;
  /** A file holding the key (systemd credentials, Kubernetes secrets): kept out of the process list. */
  keyFile?: string;
  target?: string[];
  tunnels?: string;
  id?: string;
  maxConcurrent?: string;
  reconnectMin?: string;
  reconnectMax?: string;
  grace?: string;
  logLevel?: string;
  proxy?: string;
  ca?: string;
  insecureSkipVerify?: boolean;
  for?: string;
  auditLog?: string;
  controlListen?: string;
  tlsCert?: string;
  tlsKey?: string;
}

/** Reads --config (YAML or JSON, proto JSON field names; unknown keys rejected), applies flags, validates. */
export function loadConnectorSettings(
  flags: ConnectorFlags,
  env: NodeJS.ProcessEnv = process.env,
  warn: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
): ConnectorSettings {
  const config = flags.config ? readConfigFile(ConnectorConfigSchema, flags.config) : create(ConnectorConfigSchema);
  if (flags.config && (config.key !== "" || /\/\/[^/@]*@/.test(config.proxy)) && othersCanRead(flags.config)) {
    warn(`warning: ${flags.config} holds a secret (the key or proxy credentials) and can be read by other users: chmod 600 it, or put them in the environment (FERRY_CONNECTOR_KEY, HTTPS_PROXY)`);
  }
  if (flags.relay?.length) config.relays = flags.relay;
  if (flags.key && flags.keyFile) throw invalid("give --key or --key-file, not both");
  if (flags.key) config.key = flags.key;
  if (flags.keyFile) config.key = readSecretFile(flags.keyFile, "--key-file", warn);
  if (!config.key && env.FERRY_CONNECTOR_KEY) config.key = env.FERRY_CONNECTOR_KEY;
  if (flags.target?.length) {
    config.targets = flags.target.map((spec) => {
      const eq = spec.indexOf("=");
      if (eq <= 0) throw invalid(`--target "${spec}" must be NAME=URL, e.g. --target app=http://127.0.0.1:8080`);
      return create(TargetConfigSchema, { name: spec.slice(0, eq), url: spec.slice(eq + 1) });
    });
  }
  const where = flags.config ? `${flags.config}: ` : "";
  return validate(config, flags, where);
}

function validate(c: ConnectorConfig, flags: ConnectorFlags, where: string): ConnectorSettings {
  if (c.relays.length === 0) throw invalid(`${where}no relay: give --relay URL (or "relays" in the config file)`);
  const relays = c.relays.map((r, i) => {
    const url = parseUrl(r, `relays[${i}]`, where);
    if (url.pathname !== "/" || url.search) throw invalid(`${where}relays[${i}] "${r}" must not have a path or query`);
    return url;
  });
  // With mTLS the client certificate may authenticate alone (the relay maps it to the tenant).
  const hasCert = Boolean(flags.tlsCert ?? c.tlsCert);
  if (!c.key && !hasCert) {
    throw invalid(`${where}no connector key: set FERRY_CONNECTOR_KEY, or give --key-file FILE or "key" in the config file (or a client certificate with --tls-cert and --tls-key)`);
  }
  if (c.key && !isConnectorKey(c.key)) {
    throw invalid(`${where}the connector key is not a Ferry connector key (it starts with "fck_"; create one with "ferry admin keys create TENANT")`);
  }
  if (c.targets.length === 0) throw invalid(`${where}no target: give --target NAME=URL (or "targets" in the config file)`);
  const seen = new Set<string>();
  const targets = c.targets.map((t, i) => {
    if (!isDnsLabel(t.name)) throw invalid(`${where}targets[${i}].name "${t.name}" is not a DNS label (a-z, 0-9, '-')`);
    if (seen.has(t.name)) throw invalid(`${where}targets[${i}].name "${t.name}" is listed twice`);
    seen.add(t.name);
    const field = `${where}targets[${i}]`;
    const url = parseUrl(t.url, `targets[${i}].url`, where, TARGET_SCHEMES);
    if (url.search || url.hash || url.username || url.password) {
      throw invalid(`${field}.url "${t.url}" must not have a query, fragment or credentials`);
    }
    const h2c = url.protocol === "h2c:";
    // WHATWG URLs give non-special schemes no origin (and keep the port as written): rebuild it as http://.
    const origin = h2c ? `http://${url.host}` : url.origin;
    const transport = h2c ? "h2c" : url.protocol === "https:" ? "tls" : "http1";
    let cors: CorsPolicy | undefined;
    try {
      cors = t.cors ? corsPolicy(t.cors) : undefined;
    } catch (e) {
      throw invalid(`${field}.cors: ${(e as Error).message}`);
    }
    const allowedPaths = t.allowedPaths.map((prefix, j) => {
      if (!prefix.startsWith("/") || /[?#\\]|%2f|%5c|(^|\/)\.\.?(\/|$)/i.test(prefix)) {
        throw invalid(`${field}.allowedPaths[${j}] "${prefix}" must be a path prefix starting with '/' (e.g. /rest/), without '..', '?', '#' or encoded slashes`);
      }
      return prefix;
    });
    const allowedMethods = t.allowedMethods.map((m, j) => {
      if (!/^[A-Za-z]+$/.test(m)) throw invalid(`${field}.allowedMethods[${j}] "${m}" is not an HTTP method`);
      return m.toUpperCase();
    });
    return {
      name: t.name,
      origin,
      basePath: url.pathname.replace(/\/+$/, ""),
      transport,
      host: hostSetting(t.hostHeader, field),
      cors,
      allowedPaths,
      allowedMethods,
      ...(t.requireIdentity ? { requireIdentity: true as const } : {}),
    } satisfies TargetSpec;
  });
  const tunnels = pickWholeNumber(flags.tunnels, c.tunnels, 2, `${where}tunnels`);
  if (tunnels < 1 || tunnels > 16) throw invalid(`${where}tunnels must be between 1 and 16`);
  const maxConcurrentExchanges = pickWholeNumber(flags.maxConcurrent, c.maxConcurrentExchanges, 1024, `${where}max concurrent exchanges`);
  if (maxConcurrentExchanges < 1 || maxConcurrentExchanges > 10_000) {
    throw invalid(`${where}max concurrent exchanges must be between 1 and 10000`);
  }
  const reconnectMinMs = pickDuration(flags.reconnectMin, msFromDuration(c.reconnectMin), 500, `${where}reconnect min`);
  const reconnectMaxMs = pickDuration(flags.reconnectMax, msFromDuration(c.reconnectMax), 20_000, `${where}reconnect max`);
  if (reconnectMinMs < 10 || reconnectMaxMs < reconnectMinMs) {
    throw invalid(`${where}reconnect delays need 10ms <= min <= max (got ${reconnectMinMs}ms and ${reconnectMaxMs}ms)`);
  }
  const graceMs = pickDuration(flags.grace, msFromDuration(c.gracePeriod), 30_000, `${where}grace period`);
  const id = flags.id ?? (c.id || shortId());
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(id)) throw invalid(`${where}id "${id}" may use only letters, digits, '.', '_' and '-'`);
  const logLevel = flags.logLevel ?? (c.logLevel || "info");
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw invalid(`${where}log level "${logLevel}" is not one of ${LOG_LEVELS.join(", ")}`);
  }
  let proxy: URL | undefined;
  const proxyText = flags.proxy ?? (c.proxy || undefined);
  if (proxyText !== undefined) {
    proxy = parseUrl(proxyText, "proxy", where, ["http:"]);
    if (proxy.pathname !== "/" || proxy.search) throw invalid(`${where}proxy "${redact(proxy)}" must be http://[user:pass@]host:port with no path`);
  }
  const ca = flags.ca ?? (c.ca || undefined);
  if (ca !== undefined) readable(ca, `${where}ca`);
  const tlsCert = flags.tlsCert ?? (c.tlsCert || undefined);
  const tlsKey = flags.tlsKey ?? (c.tlsKey || undefined);
  if ((tlsCert === undefined) !== (tlsKey === undefined)) {
    throw invalid(`${where}a client certificate needs both --tls-cert and --tls-key (tlsCert and tlsKey in the config file)`);
  }
  if (tlsCert) readable(tlsCert, `${where}tls cert`);
  if (tlsKey) readable(tlsKey, `${where}tls key`);
  const forText = flags.for;
  const runForMs = forText !== undefined || c.runFor ? pickDuration(forText, msFromDuration(c.runFor), 0, `${where}--for`) : undefined;
  if (runForMs !== undefined && runForMs <= 0) throw invalid(`${where}--for must be more than 0`);
  // The relay takes a leave time at most a year ahead (it refuses dates it could not represent or mean).
  if (runForMs !== undefined && runForMs > MAX_RUN_FOR_MS) throw invalid(`${where}--for must be at most 365 days (leave it out to stay connected)`);
  const controlText = flags.controlListen ?? (c.controlListen || undefined);
  const controlListen = controlText === undefined ? undefined : loopbackAddress(controlText, `${where}control listen`);
  return {
    relays,
    key: c.key,
    targets,
    tunnels,
    id,
    maxConcurrentExchanges,
    reconnectMinMs,
    reconnectMaxMs,
    graceMs,
    logLevel,
    insecureSkipVerify: flags.insecureSkipVerify ?? c.insecureSkipVerify,
    ...(proxy ? { proxy } : {}),
    ...(ca ? { ca } : {}),
    ...(runForMs !== undefined ? { runForMs } : {}),
    ...(flags.auditLog ?? c.auditLog ? { auditLog: flags.auditLog ?? c.auditLog } : {}),
    ...(controlListen ? { controlListen } : {}),
    ...(tlsCert && tlsKey ? { tlsCert, tlsKey } : {}),
  };
}

/** A URL with its password masked, for messages. */
function redact(url: URL): string {
  const copy = new URL(url);
  if (copy.password) copy.password = "***";
  return copy.href;
}

function readable(file: string, what: string): void {
  try {
    accessSync(file, constants.R_OK);
  } catch {
    throw invalid(`${what}: cannot read ${file}`);
  }
}

/** HOST:PORT on the loopback interface only: the control endpoint must never face the network. */
function loopbackAddress(text: string, what: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw invalid(`${what} "${text}" must be HOST:PORT, e.g. 127.0.0.1:7070`);
  if (host !== "127.0.0.1" && host !== "::1" && host !== "localhost") {
    throw invalid(`${what} "${text}" must be on the loopback interface (127.0.0.1, ::1 or localhost): the control endpoint has no authentication`);
  }
  return { host: host!, port };
}

const RELAY_SCHEMES = ["http:", "https:"];
const TARGET_SCHEMES = ["http:", "https:", "h2c:"];

function parseUrl(text: string, field: string, where: string, schemes = RELAY_SCHEMES): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalid(`${where}${field} "${text}" is not a URL`);
  }
  if (!schemes.includes(url.protocol)) {
    throw invalid(`${where}${field} "${text}" must start with ${schemes.map((s) => `${s}//`).join(", ").replace(/, ([^,]*)$/, " or $1")}`);
  }
  if (!url.hostname) throw invalid(`${where}${field} "${text}" has no host`);
  return url;
}

/** host_header: "" or "target", "original", or a fixed host[:port]. */
function hostSetting(value: string, field: string): TargetSpec["host"] {
  if (value === "" || value === "target") return { kind: "target" };
  if (value === "original") return { kind: "original" };
  if (!/^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(value)) {
    throw invalid(`${field}.hostHeader "${value}" must be "target", "original" or a host[:port]`);
  }
  return { kind: "fixed", value };
}
