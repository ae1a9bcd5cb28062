import { hash, X509Certificate } from "node:crypto";
import type { DetailedPeerCertificate, PeerCertificate } from "node:tls";
import { setNewest } from "../../core/bounded-map.js";

/**
 * Client certificates (mTLS) against a tenant's own CAs. The relay's TLS
 * listener asks every client for a certificate without requiring one and
 * without a CA of its own (each tenant has different ones), so nothing has
 * verified it when it gets here: this does, from the raw DER of the leaf and
 * the chain the client sent (getPeerCertificate(true)).
 */

const CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";
const ANY_USAGE = "2.5.29.37.0";
/** Certificates a client may put between its own and a tenant CA. */
const MAX_INTERMEDIATES = 4;
const CACHE_SIZE = 1000;
const CACHE_TTL_MS = 5 * 60_000;

/**
 * The CA certificates of a PEM bundle, or what is wrong with it (the policy
 * check's message). Text between certificates is ignored; a private key is
 * refused, since one pasted here is one leaked.
 */
export function parseCaBundle(pem: string): X509Certificate[] | string {
  if (/PRIVATE KEY-----/.test(pem)) return "contains a private key: give only the CA certificates";
  const blocks = pem.match(CERTIFICATE) ?? [];
  if (blocks.length === 0) return "has no PEM certificate (-----BEGIN CERTIFICATE-----)";
  const cas: X509Certificate[] = [];
  for (const [i, block] of blocks.entries()) {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(block);
    } catch {
      return `certificate ${i + 1} does not parse`;
    }
    if (!cert.ca) return `certificate ${i + 1} (${subjectOf(cert)}) is not a CA certificate (basicConstraints CA:TRUE)`;
    cas.push(cert);
  }
  return cas;
}

export type CertVerdict = { ok: true; subject: string } | { ok: false; reason: string };

export interface ClientCertVerifier {
  /** Never throws. `subject` is the certificate's CN, else its whole subject. */
  verify(cert: PeerCertificate, nowMs: number): CertVerdict;
}

/**
 * A verifier for one policy's CAs (compiled once per policy change). A
 * certificate is taken when it is within its dates, is not a CA itself, may
 * be used for client authentication (when it says what for), and is signed
 * by one of the CAs, directly or through intermediates the client sent (each
 * a CA, within its dates, and signed by the next). A certificate that
 * verified is remembered for a few minutes (by its SHA-256): an HTTP/2
 * connection presents the same one with every request.
 */
export function createClientCertVerifier(cas: readonly X509Certificate[]): ClientCertVerifier {
  const verified = new Map<string, { subject: string; until: number }>();
  return {
    verify(peer, nowMs) {
      try {
        if (!peer.raw) return { ok: false, reason: "no certificate" };
        const key = hash("sha256", peer.raw, "base64");
        const known = verified.get(key);
        if (known && nowMs < known.until) return { ok: true, subject: known.subject };
        const result = verifyChain(peer, cas, nowMs);
        if (result.ok) setNewest(verified, key, { subject: result.subject, until: Math.min(result.notAfter, nowMs + CACHE_TTL_MS) }, CACHE_SIZE);
        return result.ok ? { ok: true, subject: result.subject } : result;
      } catch {
        return { ok: false, reason: "the certificate could not be read" };
      }
    },
  };
}

function verifyChain(
  peer: PeerCertificate,
  cas: readonly X509Certificate[],
  nowMs: number,
): { ok: true; subject: string; notAfter: number } | { ok: false; reason: string } {
  const leaf = new X509Certificate(peer.raw);
  if (!within(leaf, nowMs)) return { ok: false, reason: "the certificate is expired or not yet valid" };
  if (leaf.ca) return { ok: false, reason: "a CA certificate is not a client certificate" };
  const usage = leaf.keyUsage; // the extended key usages, when the certificate names any
  if (usage && usage.length > 0 && !usage.includes(CLIENT_AUTH) && !usage.includes(ANY_USAGE)) {
    return { ok: false, reason: "the certificate is not for client authentication" };
  }
  let notAfter = Date.parse(leaf.validTo);
  let current = leaf;
  // getPeerCertificate(true) links each certificate to its issuer's; AccessRequest types it as the plain one.
  let currentPeer = peer as Partial<DetailedPeerCertificate>;
  for (let depth = 0; depth <= MAX_INTERMEDIATES; depth++) {
    for (const ca of cas) {
      if (within(ca, nowMs) && signedBy(current, ca)) return { ok: true, subject: subjectOf(leaf), notAfter: Math.min(notAfter, Date.parse(ca.validTo)) };
    }
    const next = currentPeer.issuerCertificate;
    // Node links a self-signed certificate to itself: the top of what the client sent.
    if (!next?.raw || next === currentPeer || next.raw.equals(currentPeer.raw!)) break;
    const issuer = new X509Certificate(next.raw);
    if (!issuer.ca || !within(issuer, nowMs) || !signedBy(current, issuer)) break;
    notAfter = Math.min(notAfter, Date.parse(issuer.validTo));
    current = issuer;
    currentPeer = next;
  }
  return { ok: false, reason: "the certificate is not issued by a CA of this tenant" };
}

/** checkIssued compares names and key identifiers only; verify checks the signature. */
function signedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
}

function within(cert: X509Certificate, nowMs: number): boolean {
  return Date.parse(cert.validFrom) <= nowMs && nowMs <= Date.parse(cert.validTo);
}

/** "CN=alice" -> "alice"; a certificate without a CN: its whole subject, one line. */
function subjectOf(cert: X509Certificate): string {
  const lines = cert.subject.split("\n");
  const cn = lines.find((l) => l.startsWith("CN="));
  return cn ? cn.slice(3) : lines.join(", ");
}
