/**
 * Host and port of an http:// or https:// URL, as a socket wants them: an IPv6 address without its brackets, and
 * the scheme's port (443 for https:, else 80) when the URL names none (WHATWG URLs drop a default port).
 */
export function hostPort(url: URL): { host: string; port: number } {
  return { host: url.hostname.replace(/^\[|\]$/g, ""), port: Number(url.port || (url.protocol === "https:" ? 443 : 80)) };
}

/** "host:port", an IPv6 address in brackets: a URL's authority, a CONNECT target, a listening address's URL. */
export function joinHostPort(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** The inverse of joinHostPort, for a "host:port" checked already (a port is there, an IPv6 host in brackets). */
export function splitHostPort(hostPort: string): { host: string; port: number } {
  const colon = hostPort.lastIndexOf(":");
  return { host: hostPort.slice(0, colon).replace(/^\[|\]$/g, ""), port: Number(hostPort.slice(colon + 1)) };
}

/** The URL's "host:port", its default port filled in. */
export function authority(url: URL): string {
  const { host, port } = hostPort(url);
  return joinHostPort(host, port);
}
