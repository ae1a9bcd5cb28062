import type { TargetSpec } from "./connector-config.js";

/**
 * The on-prem admin's own limit on what the outside may reach through a
 * target, checked at the connector whatever the relay allows: the method must
 * be one of `allowedMethods` (when any are set) and the path must lie under one
 * of `allowedPaths` (when any are set). Returns why a request is refused, or
 * undefined when it may go on.
 */
export function allowlistProblem(target: Pick<TargetSpec, "allowedPaths" | "allowedMethods">, method: string, path: string): string | undefined {
  if (target.allowedMethods.length > 0 && !target.allowedMethods.includes(method.toUpperCase())) {
    return `method ${method} is not allowed on this target`;
  }
  if (target.allowedPaths.length > 0 && !target.allowedPaths.some((prefix) => pathUnder(path, prefix))) {
    return `path ${path} is not allowed on this target`;
  }
  return undefined;
}

/**
 * Whether `path` lies under `prefix` on segment boundaries. "/rest/" covers
 * "/rest/" and "/rest/x" only; "/rest" covers "/rest" and "/rest/x"; neither
 * covers "/restricted" or "/restx" (a plain string test would let "/rest" open
 * "/restricted-admin"). The path is compared as sent: a percent-encoded variant
 * of an allowed prefix does not match, which fails closed; dot segments and
 * encoded slashes never get this far (pathProblem refuses them first).
 */
export function pathUnder(path: string, prefix: string): boolean {
  if (prefix.endsWith("/")) return path.startsWith(prefix);
  return path === prefix || path.startsWith(`${prefix}/`);
}
