import { type DescMessage, fromJson, type JsonObject, type JsonValue, type MessageShape } from "@bufbuild/protobuf";
import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { parse as parseYaml } from "yaml";
import { parseDuration } from "./duration.js";
import { FerryError } from "./errors.js";
import { parseSize } from "./size.js";

/**
 * Reads a YAML or JSON settings file (".json" is JSON, anything else YAML) into
 * the proto message `schema`, using the proto JSON field names (camelCase or
 * the proto's snake_case). Unknown keys are rejected, naming the key and where
 * it sits; durations may be written "500ms" or "2m" as well as proto's "0.5s".
 */
export function readConfigFile<Desc extends DescMessage>(schema: Desc, file: string, opts: ReadOptions = {}): MessageShape<Desc> {
  const what = opts.what ?? "config file";
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw invalidConfig(`cannot read ${what} ${file}: ${(e as Error).message}`);
  }
  const json = extname(file) === ".json";
  let data: unknown;
  try {
    data = json ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw invalidConfig(`${file} is not valid ${json ? "JSON" : "YAML"}: ${(e as Error).message}`);
  }
  if (opts.emptyIsDefault && (data === null || data === undefined)) data = {};
  if (!isObject(data)) {
    const examples = schema.fields.slice(0, 3).map((f) => f.jsonName);
    throw invalidConfig(`${file} must hold ${opts.mustHold ?? `a mapping of settings (${examples.join(", ")}, ...)`}`);
  }
  try {
    return fromJson(schema, normalise(schema, opts.listsOfOne ? listsOfOne(schema, data) : data, ""));
  } catch (e) {
    const message = (e as Error).message.replace(/^cannot decode message [\w.]+ from JSON: /, "");
    throw invalidConfig(`${file}: ${message}`);
  }
}

export interface ReadOptions {
  /** What the file is, in messages; default "config file". */
  what?: string;
  /** What the file must hold, in the message when it holds something else. */
  mustHold?: string;
  /** An empty file is the empty message (every field its default). */
  emptyIsDefault?: boolean;
  /**
   * A single value where a list of scalars is expected is a list of one (`audience: api://crm`, `require: apiKey`),
   * for files people write by hand that are mostly lists.
   */
  listsOfOne?: boolean;
}

/** A copy of `json` with a lone value wrapped wherever `schema` has a list of scalars; the rest as it was. */
function listsOfOne(schema: DescMessage, json: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(json)) {
    const field = schema.fields.find((f) => f.jsonName === key || f.name === key);
    if (!field) out[key] = value; // normalise names it
    else if (field.fieldKind === "list" && field.listKind !== "message" && value !== null && !Array.isArray(value)) out[key] = [value];
    else if (field.fieldKind === "message" && isObject(value) && !field.message.typeName.startsWith("google.protobuf.")) {
      out[key] = listsOfOne(field.message, value);
    } else if (field.fieldKind === "list" && field.listKind === "message" && Array.isArray(value)) {
      out[key] = value.map((item) => (isObject(item) ? listsOfOne(field.message, item) : item));
    } else out[key] = value;
  }
  return out;
}

/**
 * Rejects unknown keys itself (protobuf-es would too, but without saying in
 * which nested message), and lets files say "500ms" or "2m" — or a bare number
 * of seconds — where proto JSON insists on "0.5s" or "120s".
 */
export function normalise(schema: DescMessage, json: JsonObject, path: string): JsonObject {
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(json)) {
    const field = schema.fields.find((f) => f.jsonName === key || f.name === key);
    if (!field) throw invalidConfig(`${path ? `${path}: ` : ""}key "${key}" is unknown`);
    const at = path ? `${path}.${key}` : key;
    if (field.fieldKind === "message") {
      out[key] = normaliseMessage(field.message, value, at);
    } else if (field.fieldKind === "list" && field.listKind === "message" && Array.isArray(value)) {
      out[key] = value.map((item, i) => normaliseMessage(field.message, item, `${at}[${i}]`));
    } else if (field.fieldKind === "scalar" && field.name.endsWith("_bytes") && typeof value === "string") {
      // Byte counts may be written as sizes ("64MiB"): proto JSON wants a plain number.
      try {
        out[key] = parseSize(value).toString();
      } catch (e) {
        throw invalidConfig(`${at}: ${(e as Error).message}`);
      }
    } else {
      out[key] = value;
    }
  }
  return out;
}

function normaliseMessage(schema: DescMessage, value: JsonValue, path: string): JsonValue {
  if (schema.typeName === "google.protobuf.Duration" && (typeof value === "string" || typeof value === "number")) {
    try {
      return `${parseDuration(String(value)) / 1000}s`;
    } catch (e) {
      throw invalidConfig(`${path}: ${(e as Error).message}`);
    }
  }
  // Other well-known types have their own JSON forms; fromJson judges those.
  if (isObject(value) && !schema.typeName.startsWith("google.protobuf.")) return normalise(schema, value, path);
  return value;
}

/**
 * A whole number from a flag when given, else the file's value when set (proto
 * scalars are 0 when unset), else the default. `name` labels errors.
 */
export function pickWholeNumber(flag: string | undefined, fileValue: number, fallback: number, name: string): number {
  if (flag === undefined) return fileValue || fallback;
  const n = Number(flag);
  if (flag.trim() === "" || !Number.isInteger(n)) throw invalidConfig(`${name} "${flag}" is not a whole number`);
  return n;
}

/** Milliseconds from a duration flag ("30s") when given, else the file's value when set, else the default. */
export function pickDuration(flag: string | undefined, fileMs: number | undefined, fallback: number, name: string): number {
  if (flag === undefined) return fileMs ?? fallback;
  try {
    return parseDuration(flag);
  } catch (e) {
    throw invalidConfig(`${name}: ${(e as Error).message}`);
  }
}

/** The one error for bad settings, whether from a file, a flag or the environment. */
export function invalidConfig(message: string): FerryError {
  return new FerryError("invalid_argument", "invalid_config", message);
}

function isObject(value: unknown): value is JsonObject {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}
