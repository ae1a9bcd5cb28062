import { X509Certificate } from "node:crypto";
import { lookup } from "node:dns/promises";
import { isIP, type Socket } from "node:net";
import { connect as tlsConnect, type DetailedPeerCertificate, type TLSSocket } from "node:tls";
import { ProxyError } from "../connector/proxy.js";
import { reachRelay } from "../connector/relay-diagnosis.js";
import { judgeCertificate } from "../connector/tls-diagnosis.js";
import { checkCertificate, commonName } from "../../core/cert-check.js";
import { FerryError } from "../../core/errors.js";
import { StepFailure } from "./report.js";

const DAY_MS = 86_400_000;

/** Resolves a host name as the connector would (the system resolver, /etc/hosts included). */
export async function resolveHost(host: string): Promise<string[]> {
  try {
    return (await lookup(host, { all: true })).map((a) => a.address);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new StepFailure(
      `${host} does not resolve (${code})`,
      code === "EAI_AGAIN" ? "the DNS server did not answer: check /etc/resolv.conf or the network" : `check the spelling of ${host}, or its DNS record`,
    );
  }
}

/**
 * The relay's host:port, directly or through the proxy, dialed as the connector's diagnosis does
 * (relay-diagnosis.ts), failing with what the error means for someone at a firewall. A proxy's refusals already
 * say what to check.
 */
export async function connectRelay(host: string, port: number, proxy: URL | undefined, timeoutMs: number): Promise<Socket> {
  try {
    return await reachRelay(host, port, proxy, timeoutMs);
  } catch (err) {
    if (err instanceof ProxyError) throw new StepFailure(err.detail, err.fix);
    if (proxy) throw err;
    if (err instanceof FerryError && err.code === "connect_timeout") {
      throw new StepFailure(`no answer from ${host}:${port} within ${timeoutMs} ms`, "a firewall probably drops outbound traffic to this port: allow it, or use --proxy");
    }
    const code = (err as NodeJS.ErrnoException).code;
    const fixes: Record<string, string> = {
      ECONNREFUSED: `nothing listens on ${host}:${port}: is the relay running, and is this its port?`,
      EHOSTUNREACH: "no route to the host: check the network or the firewall",
      ENETUNREACH: "no route to the network: check the network configuration",
    };
    throw new StepFailure(`cannot connect to ${host}:${port} (${code})`, fixes[code ?? ""] ?? "check the network between here and the relay");
  }
}

export interface TlsResult {
  socket: TLSSocket;
  detail: string;
  warnings: string[];
}

/**
 * The TLS handshake, verified here rather than by Node so that a failure can
 * say which name, which chain and which date: the common ways an on-prem
 * network breaks TLS (an unknown company CA, a TLS-inspecting proxy, an expired
 * or misnamed certificate) each get their own explanation.
 */
export function tlsHandshake(socket: Socket, servername: string, opts: { ca?: Buffer; caFile?: string; insecure?: boolean }, now = Date.now()): Promise<TlsResult> {
  return new Promise((resolve, reject) => {
    // SNI carries names only (RFC 6066); an address is still checked against the certificate below.
    const sni = isIP(servername) ? undefined : servername;
    const tls = tlsConnect({ socket, servername: sni, ALPNProtocols: ["h2", "http/1.1"], ca: opts.ca, rejectUnauthorized: false });
    tls.once("error", (err: NodeJS.ErrnoException) =>
      reject(new StepFailure(`TLS handshake failed: ${err.message}`, "the server may not speak TLS on this port (an http:// relay?), or a proxy interferes")),
    );
    tls.once("secureConnect", () => {
      const peer = tls.getPeerCertificate(true);
      const x509 = chainOf(peer);
      const chain = x509.map((c) => `"${commonName(c) ?? "?"}"`).join(" ← ");
      // The connector's own explanation of a refused certificate: the name checked, the issuer, the dates.
      const verdict = opts.insecure ? undefined : judgeCertificate(tls, servername, opts.caFile);
      if (verdict) {
        tls.destroy();
        return reject(new StepFailure(`${verdict.problem}; chain: ${chain}`, verdict.fix));
      }
      // The same checks the relay runs on its own files: expiry soon, validity over 398 days, the chain, the name.
      const check = checkCertificate({ chain: x509, hosts: [servername], now: new Date(now) });
      const warnings = check.findings.filter((f) => f.severity === "warning" || f.severity === "error").map((f) => f.message);
      if (opts.insecure) warnings.push("certificate checks are off (--insecure-skip-verify): for tests only");
      const days = Math.floor((Date.parse(peer.valid_to) - now) / DAY_MS);
      resolve({ socket: tls, detail: `${tls.getProtocol()}, ${tls.getCipher().name}, certificate ${chain}, expires in ${days} days`, warnings });
    });
  });
}

/** The peer's certificates, leaf first, as far as the server sent and the local store completed them. */
function chainOf(peer: DetailedPeerCertificate): X509Certificate[] {
  const out: X509Certificate[] = [];
  const seen = new Set<string>();
  for (let c: DetailedPeerCertificate | undefined = peer; c?.raw && !seen.has(c.fingerprint256); c = c.issuerCertificate) {
    seen.add(c.fingerprint256);
    out.push(new X509Certificate(c.raw));
  }
  return out;
}
