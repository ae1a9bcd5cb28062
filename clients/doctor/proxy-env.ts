/**
 * The proxy for a relay URL: the explicit one, else HTTPS_PROXY (https://
 * relays) or HTTP_PROXY (http:// relays), lower or upper case, unless NO_PROXY
 * lists the host ("*", a name, a ".suffix" or "suffix", optionally with :port).
 */
export function proxyFor(relay: URL, explicit: URL | undefined, env: NodeJS.ProcessEnv): URL | undefined {
  if (explicit) return explicit;
  const raw = relay.protocol === "https:" ? (env.HTTPS_PROXY ?? env.https_proxy) : (env.HTTP_PROXY ?? env.http_proxy);
  if (!raw || bypassed(relay, env.NO_PROXY ?? env.no_proxy ?? "")) return undefined;
  try {
    return new URL(raw.includes("://") ? raw : `http://${raw}`);
  } catch {
    return undefined;
  }
}

function bypassed(relay: URL, noProxy: string): boolean {
  const host = relay.hostname.toLowerCase();
  const port = relay.port || (relay.protocol === "https:" ? "443" : "80");
  return noProxy
    .split(/[\s,]+/)
    .filter(Boolean)
    .some((entry) => {
      if (entry === "*") return true;
      const [name, entryPort] = entry.toLowerCase().split(/:(?=\d+$)/);
      if (entryPort && entryPort !== port) return false;
      const suffix = name!.replace(/^\*?\./, "");
      return host === suffix || host.endsWith(`.${suffix}`);
    });
}
