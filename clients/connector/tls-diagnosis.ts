import { readFileSync } from "node:fs";
import { isIP, type Socket } from "node:net";
import { checkServerIdentity, connect, type DetailedPeerCertificate, type PeerCertificate, type TLSSocket } from "node:tls";
import { checkH2Preface, notHttp2Problem } from "./h2-check.js";

export interface TlsDiagnosisOptions {
  host: string;
  port: number;
  /** Name the certificate must carry (SNI too); default: host. */
  servername?: string;
  /** PEM file to trust instead of the system store (--ca). */
  ca?: string;
  /** Client certificate and key (PEM files), for servers that ask for one. */
  cert?: string;
  key?: string;
  /** An open connection to run TLS over (e.g. a proxy's CONNECT tunnel); default: dial host:port. */
  socket?: Socket;
  timeoutMs?: number;
}

export interface ChainCertificate {
  subject: string;
  issuer: string;
  /** ISO dates. */
  validFrom: string;
  validTo: string;
  /** DNS names and IP addresses the certificate is for. */
  san: string[];
}

export interface TlsDiagnosis {
  /** Handshake done, chain trusted, name matches, HTTP/2 negotiated. */
  ok: boolean;
  /** "TLSv1.3", ... (undefined when the handshake failed). */
  protocol?: string;
  /** The ALPN protocol the server picked from h2 and http/1.1; false: none. */
  alpn?: string | false;
  /** The name that was checked against the certificate. */
  servername: string;
  /** The certificates the server presented, leaf first. */
  chain: ChainCertificate[];
  problem?: string;
  fix?: string;
}

const UNTRUSTED = new Set([
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
]);

/**
 * Opens a TLS connection the way the connector does (same trust, same client certificate) but accepting any
 * certificate, so it can say why the real one failed: grpc-js only reports the OpenSSL code, without the chain,
 * the name checked or the dates. Shared with `ferry doctor`.
 */
export function diagnoseTls(opts: TlsDiagnosisOptions): Promise<TlsDiagnosis> {
  const servername = opts.servername ?? opts.host;
  const trustSource = opts.ca ? `--ca ${opts.ca}` : "the system store (and NODE_EXTRA_CA_CERTS)";
  return new Promise((resolve) => {
    const socket = connect({
      ...(opts.socket ? { socket: opts.socket } : { host: opts.host, port: opts.port }),
      ...(isIP(servername) ? {} : { servername }),
      ...(opts.ca ? { ca: readFileSync(opts.ca) } : {}),
      ...(opts.cert && opts.key ? { cert: readFileSync(opts.cert), key: readFileSync(opts.key) } : {}),
      ALPNProtocols: ["h2", "http/1.1"],
      rejectUnauthorized: false,
    });
    const timer = setTimeout(() => socket.destroy(new Error(`no TLS handshake within ${(opts.timeoutMs ?? 10_000) / 1000}s`)), opts.timeoutMs ?? 10_000);
    let settled = false;
    const done = (result: TlsDiagnosis) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(result);
    };
    socket.once("error", (err: Error & { code?: string }) => {
      socket.destroy();
      done({
        ok: false,
        servername,
        chain: [],
        problem: `the TLS handshake with ${opts.host}:${opts.port} failed: ${err.message}`,
        fix: handshakeFix(err),
      });
    });
    socket.once("secureConnect", () => {
      const peer = socket.getPeerCertificate(true);
      const chain = chainOf(peer);
      const base = { servername, protocol: socket.getProtocol() ?? undefined, alpn: socket.alpnProtocol ?? false, chain };
      const verdict = judge(socket.authorizationError as (Error & { code?: string }) | null, peer, chain, servername, trustSource);
      if (verdict) {
        socket.destroy();
        return done({ ok: false, ...base, ...verdict });
      }
      if (socket.alpnProtocol === "h2") {
        socket.destroy();
        return done({ ok: true, ...base });
      }
      if (socket.alpnProtocol === "http/1.1") {
        socket.destroy();
        return done({ ok: false, ...base, ...notHttp2Problem("http/1.1") });
      }
      // No ALPN at all: HTTP/2 may still work by prior knowledge; ask with the preface.
      void checkH2Preface(socket).then((answer) =>
        done(answer === "h2" ? { ok: true, ...base } : { ok: false, ...base, ...notHttp2Problem(answer === "http/1.1" ? "http/1.1, no ALPN" : "no ALPN, and the HTTP/2 preface was refused") }),
      );
    });
  });
}

/** What is wrong with the certificate on an open TLS connection, as problem and fix; undefined when it is fine. */
export function judgeCertificate(socket: TLSSocket, servername: string, ca?: string): { problem: string; fix: string } | undefined {
  const peer = socket.getPeerCertificate(true);
  const trustSource = ca ? `--ca ${ca}` : "the system store (and NODE_EXTRA_CA_CERTS)";
  return judge(socket.authorizationError as (Error & { code?: string }) | null, peer, chainOf(peer), servername, trustSource);
}

/** The first thing wrong with the certificate, as problem and fix; undefined when it is fine. */
function judge(
  authError: (Error & { code?: string }) | null,
  peer: PeerCertificate,
  chain: ChainCertificate[],
  servername: string,
  trustSource: string,
): { problem: string; fix: string } | undefined {
  const code = typeof authError === "string" ? authError : (authError?.code ?? authError?.message);
  const now = Date.now();
  const expired = chain.find((c) => Date.parse(c.validTo) < now);
  if (code === "CERT_HAS_EXPIRED" || (code && expired)) {
    const which = expired ?? chain[0]!;
    return {
      problem: `the certificate "${which.subject}" expired on ${which.validTo}`,
      fix: "renew the relay's certificate (or check this machine's clock)",
    };
  }
  const early = chain.find((c) => Date.parse(c.validFrom) > now);
  if (code === "CERT_NOT_YET_VALID" && early) {
    return { problem: `the certificate "${early.subject}" is not valid before ${early.validFrom}`, fix: "check this machine's clock" };
  }
  if (code && UNTRUSTED.has(code)) {
    const top = chain[chain.length - 1];
    const signer = top ? top.issuer : "an unknown issuer";
    return {
      problem: `the relay's certificate is signed by "${signer}", which ${trustSource} does not trust`,
      fix: `give that CA's certificate with --ca FILE (if "${signer}" is your company's TLS-inspecting proxy, better exempt the relay's host from inspection)`,
    };
  }
  if (authError && code !== "ERR_TLS_CERT_ALTNAME_INVALID") {
    return { problem: `the relay's certificate was refused: ${code}`, fix: "check the relay's certificate chain, or --ca" };
  }
  const identity = checkServerIdentity(servername, peer);
  if (identity) {
    const names = chain[0]?.san.length ? chain[0].san : [chain[0]?.subject ?? "?"];
    return {
      problem: `the certificate is for ${names.join(", ")}, not ${servername}`,
      fix: "connect with a relay URL whose host the certificate names, or reissue the certificate with that name",
    };
  }
  return undefined;
}

function handshakeFix(err: Error & { code?: string }): string {
  const text = `${err.code ?? ""} ${err.message}`;
  if (/certificate required|alert number 116|HANDSHAKE_FAILURE_ON_CLIENT_HELLO|bad certificate|alert number 42/i.test(text)) {
    return "the relay may want a client certificate: give --tls-cert and --tls-key (one its --connector-ca signed)";
  }
  if (/wrong version number|packet length too long|http request/i.test(text)) {
    return "the server did not answer in TLS: use an http:// relay URL, or check the port";
  }
  return "check that the relay URL's host and port are right and that TLS reaches the relay unmodified";
}

function chainOf(peer: DetailedPeerCertificate): ChainCertificate[] {
  const chain: ChainCertificate[] = [];
  let cert: DetailedPeerCertificate | undefined = peer && Object.keys(peer).length ? peer : undefined;
  while (cert && chain.length < 10) {
    chain.push({
      subject: dn(cert.subject),
      issuer: dn(cert.issuer),
      validFrom: isoDate(cert.valid_from),
      validTo: isoDate(cert.valid_to),
      san: (cert.subjectaltname ?? "")
        .split(", ")
        .filter(Boolean)
        .map((s) => s.replace(/^(DNS|IP Address):/, "")),
    });
    // A self-signed root points at itself; stop there.
    if (!cert.issuerCertificate || cert.issuerCertificate === cert || cert.issuerCertificate.fingerprint256 === cert.fingerprint256) break;
    cert = cert.issuerCertificate;
  }
  return chain;
}

function dn(name: object | undefined): string {
  if (!name) return "";
  return Object.entries(name as Record<string, string | string[]>)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("+") : v}`)
    .join(", ");
}

function isoDate(text: string): string {
  const t = Date.parse(text);
  return Number.isNaN(t) ? text : new Date(t).toISOString();
}
