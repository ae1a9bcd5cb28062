import { FerryError } from "../../core/errors.js";
import { isDnsLabel } from "../../core/names.js";
import { parseHostPath, type RelayPath } from "./relay-path.js";

/**
 * Host-based routing: {target}.{tenant}.<base domain> reaches that target with
 * the path untouched, for apps that use absolute paths or several root
 * context paths and break under a prefix.
 */
export interface HostRouting {
  /** Whether the authority (Host, or HTTP/2 :authority) is a name below the base domain: the gateway answers all of it. */
  owns(authority: string | undefined): boolean;
  /** The route of a request whose authority this routing owns; a precise error for names that are not {target}.{tenant}. */
  route(authority: string, url: string): RelayPath;
}

export function createHostRouting(baseDomain: string): HostRouting {
  const suffix = `.${baseDomain.toLowerCase()}`;
  /** The labels before the base domain, or undefined when the name is not below it. */
  const below = (authority: string | undefined): string[] | undefined => {
    if (!authority) return undefined;
    const name = hostname(authority);
    if (!name.endsWith(suffix)) return undefined;
    return name.slice(0, -suffix.length).split(".");
  };
  return {
    owns: (authority) => below(authority) !== undefined,
    route(authority, url) {
      const labels = below(authority) ?? [];
      const [target, tenant] = labels;
      if (labels.length !== 2 || !isDnsLabel(target!) || !isDnsLabel(tenant!)) {
        throw new FerryError(
          "not_found",
          "bad_host",
          `"${hostname(authority)}" is not {target}.{tenant}${suffix}: each of target and tenant is one DNS label`,
        );
      }
      return parseHostPath(url, tenant!, target!);
    },
  };
}

/** Lower-case host name without port or trailing dot ("App.Acme.example.com.:443" → "app.acme.example.com"). */
function hostname(authority: string): string {
  const name = authority.startsWith("[") ? authority.slice(0, authority.indexOf("]") + 1) : authority.replace(/:\d*$/, "");
  return name.toLowerCase().replace(/\.$/, "");
}
