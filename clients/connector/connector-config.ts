import { create, type DescMessage, fromJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { parse as parseYaml } from "yaml";
import { type ConnectorConfig, ConnectorConfigSchema } from "../../gen/ferry/config/v1/connector_config_pb.js";
import { msFromDuration, parseDuration } from "../sdk/duration.js";
import { FerryError } from "../sdk/errors.js";
import { shortId } from "../sdk/ids.js";
import { isDnsLabel } from "../sdk/names.js";
import { LOG_LEVELS } from "../sdk/logger.js";

/** A validated target: the only places the connector will ever send requests. */
export interface TargetSpec {
  name: string;
  /** Scheme, host and port. */
  origin: string;
  /** Path prefix with no trailing "/" ("" for the root). */
  basePath: string;
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
}

/** Flag values; each one given overrides the file. */
export interface ConnectorFlags {
  config?: string;
  relay?: string[];
  key?: string;
  target?: string[];
  tunnels?: string;
  id?: string;
  maxConcurrent?: string;
  reconnectMin?: string;
  reconnectMax?: string;
  grace?: string;
  logLevel?: string;
}

/** Reads --config (YAML or JSON, proto JSON field names; unknown keys rejected), applies flags, validates. */
export function loadConnectorSettings(flags: ConnectorFlags, env: NodeJS.ProcessEnv = process.env): ConnectorSettings {
  const config = flags.config ? readConfigFile(flags.config) : create(ConnectorConfigSchema);
  if (flags.relay?.length) config.relays = flags.relay;
  if (flags.key) config.key = flags.key;
  if (!config.key && env.FERRY_CONNECTOR_KEY) config.key = env.FERRY_CONNECTOR_KEY;
  if (flags.target?.length) {
    config.targets = flags.target.map((spec) => {
      const eq = spec.indexOf("=");
      if (eq <= 0) throw invalid(`--target "${spec}" must be NAME=URL, e.g. --target app=http://127.0.0.1:8080`);
      return { $typeName: "ferry.config.v1.TargetConfig", name: spec.slice(0, eq), url: spec.slice(eq + 1) };
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
  if (!c.key) throw invalid(`${where}no connector key: give --key, FERRY_CONNECTOR_KEY or "key" in the config file`);
  if (!/^fck_[a-z0-9]{16}_[A-Za-z0-9_-]{43}$/.test(c.key)) {
    throw invalid(`${where}the connector key is not a Ferry connector key (it starts with "fck_"; create one with "ferry admin keys create TENANT")`);
  }
  if (c.targets.length === 0) throw invalid(`${where}no target: give --target NAME=URL (or "targets" in the config file)`);
  const seen = new Set<string>();
  const targets = c.targets.map((t, i) => {
    if (!isDnsLabel(t.name)) throw invalid(`${where}targets[${i}].name "${t.name}" is not a DNS label (a-z, 0-9, '-')`);
    if (seen.has(t.name)) throw invalid(`${where}targets[${i}].name "${t.name}" is listed twice`);
    seen.add(t.name);
    const url = parseUrl(t.url, `targets[${i}].url`, where);
    if (url.search || url.hash || url.username || url.password) {
      throw invalid(`${where}targets[${i}].url "${t.url}" must not have a query, fragment or credentials`);
    }
    return { name: t.name, origin: url.origin, basePath: url.pathname.replace(/\/+$/, "") };
  });
  const tunnels = flagOr(flags.tunnels, c.tunnels, 2, "tunnels", where);
  if (tunnels < 1 || tunnels > 16) throw invalid(`${where}tunnels must be between 1 and 16`);
  const maxConcurrentExchanges = flagOr(flags.maxConcurrent, c.maxConcurrentExchanges, 256, "max concurrent exchanges", where);
  if (maxConcurrentExchanges < 1 || maxConcurrentExchanges > 10_000) {
    throw invalid(`${where}max concurrent exchanges must be between 1 and 10000`);
  }
  const reconnectMinMs = durationOr(flags.reconnectMin, msFromDuration(c.reconnectMin), 500, "reconnect min", where);
  const reconnectMaxMs = durationOr(flags.reconnectMax, msFromDuration(c.reconnectMax), 20_000, "reconnect max", where);
  if (reconnectMinMs < 10 || reconnectMaxMs < reconnectMinMs) {
    throw invalid(`${where}reconnect delays need 10ms <= min <= max (got ${reconnectMinMs}ms and ${reconnectMaxMs}ms)`);
  }
  const graceMs = durationOr(flags.grace, msFromDuration(c.gracePeriod), 30_000, "grace period", where);
  const id = flags.id ?? (c.id || shortId());
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(id)) throw invalid(`${where}id "${id}" may use only letters, digits, '.', '_' and '-'`);
  const logLevel = flags.logLevel ?? (c.logLevel || "info");
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw invalid(`${where}log level "${logLevel}" is not one of ${LOG_LEVELS.join(", ")}`);
  }
  return { relays, key: c.key, targets, tunnels, id, maxConcurrentExchanges, reconnectMinMs, reconnectMaxMs, graceMs, logLevel };
}

function readConfigFile(file: string): ConnectorConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw invalid(`cannot read config file ${file}: ${(e as Error).message}`);
  }
  let data: unknown;
  try {
    data = extname(file) === ".json" ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw invalid(`${file} is not valid ${extname(file) === ".json" ? "JSON" : "YAML"}: ${(e as Error).message}`);
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    throw invalid(`${file} must hold a mapping of settings (relays, key, targets, ...)`);
  }
  try {
    return fromJson(ConnectorConfigSchema, normaliseDurations(ConnectorConfigSchema, data as JsonObject));
  } catch (e) {
    const message = (e as Error).message.replace(/^cannot decode message [\w.]+ from JSON: /, "");
    throw invalid(`${file}: ${message}`);
  }
}

/** Lets files say "500ms" or "2m" where proto JSON insists on "0.5s" or "120s". */
function normaliseDurations(schema: DescMessage, json: JsonObject): JsonObject {
  const out: JsonObject = { ...json };
  for (const field of schema.fields) {
    const key = field.jsonName in out ? field.jsonName : field.name in out ? field.name : undefined;
    if (key === undefined) continue;
    const value: JsonValue = out[key]!;
    if (field.fieldKind === "message" && field.message.typeName === "google.protobuf.Duration" && typeof value === "string") {
      try {
        out[key] = `${parseDuration(value) / 1000}s`;
      } catch (e) {
        throw invalid(`${key}: ${(e as Error).message}`);
      }
    }
  }
  return out;
}

function parseUrl(text: string, field: string, where: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalid(`${where}${field} "${text}" is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw invalid(`${where}${field} "${text}" must start with http:// or https://`);
  }
  return url;
}

function flagOr(flag: string | undefined, fileValue: number, fallback: number, name: string, where: string): number {
  if (flag === undefined) return fileValue || fallback;
  const n = Number(flag);
  if (!Number.isInteger(n)) throw invalid(`${where}${name} "${flag}" is not a whole number`);
  return n;
}

function durationOr(flag: string | undefined, fileMs: number | undefined, fallback: number, name: string, where: string): number {
  if (flag === undefined) return fileMs ?? fallback;
  try {
    return parseDuration(flag);
  } catch (e) {
    throw invalid(`${where}${name}: ${(e as Error).message}`);
  }
}

function invalid(message: string): FerryError {
  return new FerryError("invalid_argument", "invalid_config", message);
}
