import { type DescMessage, fromJson, type JsonObject } from "@bufbuild/protobuf";
import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { parse as parseYaml } from "yaml";
import { type AccessPolicy, AccessPolicySchema } from "../../gen/ferry/access/v1/access_policy_pb.js";
import { invalidConfig, normalise } from "../../core/config-file.js";

/**
 * Reads an access policy file (`ferry admin access set --file`): YAML, or
 * JSON when it ends in ".json", with proto JSON field names, unknown keys
 * rejected naming where they sit, durations as "1s" or "500ms" (core/config-file.ts).
 * One thing more than other config files: a single value where a list is
 * expected is a list of one (`audience: api://crm`, `require: apiKey`), as
 * people write policies by hand. The relay validates what it means.
 */
export function readPolicyFile(file: string): AccessPolicy {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw invalidConfig(`cannot read policy file ${file}: ${(e as Error).message}`);
  }
  const json = extname(file) === ".json";
  let data: unknown;
  try {
    data = json ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw invalidConfig(`${file} is not valid ${json ? "JSON" : "YAML"}: ${(e as Error).message}`);
  }
  // An empty file is the empty policy: every target public.
  if (data === null || data === undefined) data = {};
  if (!isObject(data)) throw invalidConfig(`${file} must hold a mapping with "rules" (and "clientCaPem" for mtls)`);
  try {
    return fromJson(AccessPolicySchema, normalise(AccessPolicySchema, listsOfOne(AccessPolicySchema, data), ""));
  } catch (e) {
    const message = (e as Error).message.replace(/^cannot decode message [\w.]+ from JSON: /, "");
    throw invalidConfig(`${file}: ${message}`);
  }
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

function isObject(value: unknown): value is JsonObject {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

