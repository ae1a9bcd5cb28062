import { request } from "node:http";
import type { Socket } from "node:net";
import { FerryError } from "../../core/errors.js";
import { authority, hostPort, joinHostPort } from "../../core/host-port.js";

/**
 * Which HTTP proxy, if any, the connector uses to reach `relay`: the configured one (--proxy or the file), else
 * HTTPS_PROXY (https:// relays) or HTTP_PROXY (http:// relays), lower case winning as curl does. NO_PROXY applies
 * to both, as with curl: a relay inside the corporate network must not hairpin through the proxy.
 */
export function proxyFor(relay: URL, configured: URL | undefined, env: NodeJS.ProcessEnv = process.env): URL | undefined {
  if (bypassesProxy(relay, env.no_proxy || env.NO_PROXY || "")) return undefined;
  if (configured) return configured;
  const text = relay.protocol === "https:" ? (env.https_proxy || env.HTTPS_PROXY) : (env.http_proxy || env.HTTP_PROXY);
  if (!text) return undefined;
  let url: URL;
  try {
    // Like curl, accept "proxy.corp:3128" without a scheme.
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`);
  } catch {
    throw new Error(`the proxy in the environment ("${text}") is not a URL`);
  }
  if (url.protocol !== "http:") throw new Error(`the proxy in the environment ("${url.protocol}//...") must be an http:// proxy`);
  return url;
}

/** NO_PROXY entries: "*", host names (matching subdomains too), ".suffix", IP addresses, each optionally ":port". */
export function bypassesProxy(relay: URL, noProxy: string): boolean {
  const relayHost = hostPort(relay);
  const host = relayHost.host.toLowerCase();
  const port = String(relayHost.port);
  for (const raw of noProxy.split(/[,\s]+/)) {
    let entry = raw.trim().toLowerCase();
    if (!entry) continue;
    if (entry === "*") return true;
    let entryPort: string | undefined;
    const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(entry);
    if (m) {
      entry = m[1]!;
      entryPort = m[2];
    }
    entry = entry.replace(/^\[|\]$/g, "").replace(/^\*?\./, ".");
    if (entryPort && entryPort !== port) continue;
    const suffix = entry.startsWith(".") ? entry : `.${entry}`;
    if (host === entry.replace(/^\./, "") || host.endsWith(suffix)) return true;
  }
  return false;
}

/** The proxy said no, or could not be reached: `detail` says which, `fix` what to check; the message is both. */
export class ProxyError extends FerryError {
  constructor(
    readonly detail: string,
    readonly fix: string,
    /** The proxy's HTTP status, when it answered. */
    readonly status?: number,
  ) {
    super("unavailable", "proxy_failed", `${detail} — ${fix}`);
    this.name = "ProxyError";
  }
}

/** The proxy URL for messages: no password. */
export function describeProxy(proxy: URL): string {
  return authority(proxy);
}

/** Basic credentials from the proxy URL's userinfo ("user:pass", decoded), or undefined. */
export function proxyCredentials(proxy: URL): string | undefined {
  if (!proxy.username) return undefined;
  return `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
}

/**
 * Opens a tunnel to host:port through the proxy with HTTP CONNECT and returns the raw socket. The tunnels
 * themselves go through grpc-js's own CONNECT (see relay-channel.ts); this one explains failures and serves
 * `ferry doctor`, because grpc-js only reports that the connection failed.
 */
export function connectThroughProxy(opts: { proxy: URL; host: string; port: number; timeoutMs?: number }): Promise<Socket> {
  const { proxy, host, port } = opts;
  const target = joinHostPort(host, port);
  const creds = proxyCredentials(proxy);
  const where = describeProxy(proxy);
  return new Promise((resolve, reject) => {
    const req = request({
      ...hostPort(proxy),
      method: "CONNECT",
      path: target,
      headers: { Host: target, ...(creds ? { "Proxy-Authorization": `Basic ${Buffer.from(creds).toString("base64")}` } : {}) },
      timeout: opts.timeoutMs ?? 10_000,
    });
    req.once("connect", (res, socket, head) => {
      if (res.statusCode === 200) {
        if (head.length > 0) socket.unshift(head);
        resolve(socket);
        return;
      }
      socket.destroy();
      const status = res.statusCode ?? 0;
      const detail = `proxy ${where} refused CONNECT to ${target}: ${status} ${res.statusMessage ?? ""}`.trimEnd();
      reject(new ProxyError(detail, refusalFix(status, creds !== undefined), status));
    });
    req.once("timeout", () => req.destroy(new Error("timed out")));
    req.once("error", (err) => reject(new ProxyError(`cannot reach the proxy ${where}: ${err.message}`, "check --proxy / HTTPS_PROXY")));
    req.end();
  });
}

function refusalFix(status: number, sentCredentials: boolean): string {
  // Tinyproxy (and some others) answer a bad BasicAuth with 401 rather than 407.
  if (status === 407 || status === 401) {
    return sentCredentials
      ? "check --proxy credentials (http://user:password@proxy:port)"
      : "the proxy wants credentials: give them in --proxy as http://user:password@proxy:port";
  }
  if (status === 403) return "the proxy does not allow this destination or port; ask for the relay's host and port to be allowed";
  if (status === 502 || status === 503 || status === 504) return "the proxy could not reach the relay; check the relay URL, or whether the proxy may reach it";
  return "check --proxy";
}
