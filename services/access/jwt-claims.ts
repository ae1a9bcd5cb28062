import type { Value } from "@bufbuild/protobuf/wkt";

/**
 * Whether a verified token's claims carry every claim a rule requires
 * (JwtRule.claims): a string, number or bool must equal the claim, or be one of
 * its entries when the claim is an array (groups, roles); a list means any one
 * of its entries will do. Anything else in the rule (null, an object) never
 * matches: a rule that cannot be met refuses rather than lets through.
 */
export function claimsMatch(claims: Record<string, unknown>, required: Readonly<Record<string, Value>>): boolean {
  for (const name of Object.keys(required)) {
    if (!claimMatches(claimAt(claims, name), required[name]!)) return false;
  }
  return true;
}

/**
 * What of `claims` decides each of `requireds` (claimsMatch reads nothing else): each claim they name, a list
 * claim cut down to the entries some of them compare with. A session keeps this much, not a person's 200 groups.
 */
export function claimsAskedFor(claims: Record<string, unknown>, requireds: readonly Readonly<Record<string, Value>>[]): Record<string, unknown> {
  const kept: Record<string, unknown> = {};
  for (const required of requireds) {
    for (const [name, expected] of Object.entries(required)) {
      const actual = claimAt(claims, name);
      if (actual === undefined) continue;
      if (!Array.isArray(actual)) {
        kept[name] = actual;
        continue;
      }
      const before = Array.isArray(kept[name]) ? (kept[name] as unknown[]) : [];
      kept[name] = [...new Set([...before, ...actual.filter((entry) => claimMatches(entry, expected))])];
    }
  }
  return kept;
}

function claimMatches(actual: unknown, expected: Value): boolean {
  const { kind } = expected;
  switch (kind.case) {
    case "stringValue":
    case "numberValue":
    case "boolValue":
      return actual === kind.value || (Array.isArray(actual) && actual.includes(kind.value));
    case "listValue":
      return kind.value.values.some((v) => v.kind.case !== "listValue" && claimMatches(actual, v));
    default:
      return false;
  }
}

/**
 * The claim `name`: a top-level claim of that name if there is one (Auth0's
 * namespaced claims are URLs full of dots), else a dotted path into nested
 * objects (Keycloak's "realm_access.roles"). Own properties only, so
 * "constructor" or "__proto__" never reach Object.prototype.
 */
export function claimAt(claims: Record<string, unknown>, name: string): unknown {
  if (Object.hasOwn(claims, name)) return claims[name];
  let at: unknown = claims;
  for (const part of name.split(".")) {
    if (typeof at !== "object" || at === null || Array.isArray(at) || !Object.hasOwn(at, part)) return undefined;
    at = (at as Record<string, unknown>)[part];
  }
  return at;
}
