import { type AccessPolicy, AccessPolicySchema } from "../../gen/ferry/access/v1/access_policy_pb.js";
import { readConfigFile } from "../../core/config-file.js";

/**
 * Reads an access policy file (`ferry admin access set --file`): YAML, or
 * JSON when it ends in ".json", with proto JSON field names, unknown keys
 * rejected naming where they sit, durations as "1s" or "500ms" (core/config-file.ts).
 * One thing more than other config files: a single value where a list is
 * expected is a list of one (`audience: api://crm`, `require: apiKey`), as
 * people write policies by hand. The relay validates what it means.
 */
export function readPolicyFile(file: string): AccessPolicy {
  // An empty file is the empty policy: every target public.
  return readConfigFile(AccessPolicySchema, file, {
    what: "policy file",
    mustHold: 'a mapping with "rules" (and "clientCaPem" for mtls)',
    emptyIsDefault: true,
    listsOfOne: true,
  });
}
