import type { Http2ServerRequest } from "node:http2";
import type { PeerCertificate, TLSSocket } from "node:tls";
import { normalizeCertSerial } from "../../core/cert-serial.js";
import { isDnsLabel } from "../../core/names.js";

/** What a connector's client certificate says about it. */
export type ConnectorCert =
  /** No certificate, or a cleartext connection. */
  | { kind: "none" }
  /** Presented but not usable: not signed by --connector-ca, expired, naming no tenant, or `denied` (its serial) by its tenant. */
  | { kind: "untrusted"; reason: string; subject: string; denied?: string }
  /** Verified against --connector-ca; `name` is the SAN or CN it was read from; `serial` normalised (normalizeCertSerial). */
  | { kind: "valid"; tenant: string; connectorId?: string; name: string; serial: string; notAfter: Date };

/**
 * Reads the tunnel's client certificate. The TLS server asks for one without
 * requiring it (key-only connectors and browsers still get in), so whether it
 * verified is told here by `authorized`, not by the handshake failing. Names:
 * the DNS SANs, or the CN when there are none; each is `tenant` or
 * `connectorid.tenant`.
 */
export function connectorCert(req: Http2ServerRequest): ConnectorCert {
  const socket = req.stream.session?.socket as Partial<TLSSocket> | undefined;
  if (!socket || typeof socket.getPeerCertificate !== "function") return { kind: "none" };
  const cert = socket.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) return { kind: "none" };
  const subject = cert.subject?.CN ? `CN=${String(cert.subject.CN)}` : "";
  if (!socket.authorized) {
    return { kind: "untrusted", reason: String(socket.authorizationError ?? "not signed by the connector CA"), subject };
  }
  const names = certNames(cert);
  const parsed = names.map(parseName).filter((n) => n !== undefined);
  const tenants = new Set(parsed.map((n) => n.tenant));
  if (parsed.length === 0) return { kind: "untrusted", reason: `names no tenant (${names.join(", ") || "no names"})`, subject };
  if (tenants.size > 1) return { kind: "untrusted", reason: `names several tenants (${[...tenants].join(", ")})`, subject };
  const first = parsed[0]!;
  return { kind: "valid", ...first, serial: normalizeCertSerial(String(cert.serialNumber ?? "")) ?? "", notAfter: new Date(cert.valid_to) };
}

/**
 * Whether the tenant's deny list (TenantRecord.denied_certificate_serials)
 * names `serial` (normalised). The admin API stores the list normalised; it is
 * normalised again here because a stored record is input too.
 */
export function serialDenied(denied: readonly string[] | undefined, serial: string | undefined): boolean {
  if (!serial || !denied || denied.length === 0) return false;
  return denied.some((d) => normalizeCertSerial(d) === serial);
}

function certNames(cert: PeerCertificate): string[] {
  const dns = (cert.subjectaltname ?? "")
    .split(/,\s*/)
    .filter((s) => s.startsWith("DNS:"))
    .map((s) => s.slice(4).replace(/^"(.*)"$/, "$1").toLowerCase());
  if (dns.length) return dns;
  const cn = cert.subject?.CN;
  return cn ? [String(cn).toLowerCase()] : [];
}

/** "acme" -> tenant acme; "edge-1.acme" -> connector edge-1 of tenant acme; anything else names nothing. */
function parseName(name: string): { tenant: string; connectorId?: string; name: string } | undefined {
  const labels = name.split(".");
  if (!labels.every(isDnsLabel)) return undefined;
  if (labels.length === 1) return { tenant: labels[0]!, name };
  if (labels.length === 2) return { tenant: labels[1]!, connectorId: labels[0]!, name };
  return undefined;
}
