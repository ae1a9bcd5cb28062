/** What rule matching looks at: the rule's targets ("*" for every one) and path prefixes (none: every path). */
export interface RuleScope {
  readonly targets: readonly string[];
  readonly paths: readonly string[];
}

/**
 * The first rule whose targets and paths take the request, or undefined (the
 * target is public for this path). Only the first: rules are an ordered
 * list, so a narrow rule above a broad one is an exception to it.
 */
export function matchRule<R extends RuleScope>(rules: readonly R[], target: string, path: string): R | undefined {
  for (const rule of rules) {
    if (!rule.targets.some((t) => t === "*" || t === target)) continue;
    if (rule.paths.length === 0 || rule.paths.some((p) => pathUnder(path, p))) return rule;
  }
  return undefined;
}

/**
 * Segment-aware prefix: "/api/" takes /api/x (and /api/ itself) but not /api;
 * "/api" takes /api and /api/x but never /apix, which a plain prefix would.
 * Both sides are the canonical, percent-encoded path the gateway makes, so
 * there is no second spelling of a path to slip past a rule with.
 */
export function pathUnder(path: string, prefix: string): boolean {
  if (prefix.endsWith("/")) return path.startsWith(prefix);
  return path === prefix || (path.startsWith(prefix) && path.charCodeAt(prefix.length) === 0x2f);
}
