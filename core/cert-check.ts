import { X509Certificate } from "node:crypto";

/**
 * What is wrong (or right) with a TLS server certificate chain: expiry, host
 * names, chain completeness, lifetime. Pure: no files, no sockets, no clock of
 * its own, so the relay (at start and reload) and `ferry doctor` (on files or
 * on what a relay presents) share it.
 */

export type CertSeverity = "ok" | "info" | "warning" | "error";

export interface CertFinding {
  severity: CertSeverity;
  /** Stable name for scripts: expired, expires_soon, host_not_covered, chain_incomplete... */
  code: string;
  message: string;
}

export interface CertSummary {
  subject: string;
  issuer: string;
  /** DNS names and IP addresses, as "DNS:name" / "IP:addr". */
  sans: string[];
  notBefore: string;
  notAfter: string;
  serial: string;
  selfSigned: boolean;
  isCa: boolean;
}

export interface CertCheckInput {
  /** PEM text (leaf first, then intermediates) or parsed certificates in that order. */
  chain: string | X509Certificate[];
  /** Names clients and connectors use to reach the server (each must be covered). */
  hosts?: string[];
  /** Base domain for host routing: the certificate should cover it or a wildcard below it. */
  baseDomain?: string;
  now?: Date;
}

export interface CertCheckResult {
  /** True when no finding is an error. */
  ok: boolean;
  certs: CertSummary[];
  findings: CertFinding[];
}

const DAY_MS = 86_400_000;
/** Renew before this; certbot renews at 30 days left, so less means renewal is failing. */
export const EXPIRY_WARNING_DAYS = 30;
/** Browsers and Apple platforms refuse publicly trusted server certificates valid for longer. */
export const MAX_VALIDITY_DAYS = 398;

/** Every certificate in a PEM text, in file order; throws on a block that does not parse. */
export function parseCertChain(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b));
}

export function summarizeCert(cert: X509Certificate): CertSummary {
  return {
    subject: oneLine(cert.subject),
    issuer: oneLine(cert.issuer),
    sans: subjectAltNames(cert),
    notBefore: new Date(cert.validFrom).toISOString(),
    notAfter: new Date(cert.validTo).toISOString(),
    serial: cert.serialNumber,
    selfSigned: isSelfSigned(cert),
    isCa: cert.ca,
  };
}

export function checkCertificate(input: CertCheckInput): CertCheckResult {
  const certs = typeof input.chain === "string" ? parseCertChain(input.chain) : input.chain;
  const now = input.now ?? new Date();
  const findings: CertFinding[] = [];
  const add = (severity: CertSeverity, code: string, message: string) => findings.push({ severity, code, message });
  const leaf = certs[0];
  if (!leaf) {
    add("error", "no_certificate", "no PEM certificate found");
    return { ok: false, certs: [], findings };
  }
  const name = describe(leaf);

  // Validity window.
  const notBefore = new Date(leaf.validFrom);
  const notAfter = new Date(leaf.validTo);
  const daysLeft = Math.floor((notAfter.getTime() - now.getTime()) / DAY_MS);
  if (notAfter <= now) add("error", "expired", `${name} expired on ${day(notAfter)}: renew it`);
  else if (notBefore > now) add("error", "not_yet_valid", `${name} is not valid before ${notBefore.toISOString()} (check the clock)`);
  else if (daysLeft < EXPIRY_WARNING_DAYS) add("warning", "expires_soon", `${name} expires on ${day(notAfter)} (${daysLeft} days left): renew it`);
  else add("ok", "valid", `${name} is valid until ${day(notAfter)} (${daysLeft} days left)`);
  const lifetimeDays = Math.round((notAfter.getTime() - notBefore.getTime()) / DAY_MS);
  if (lifetimeDays > MAX_VALIDITY_DAYS) {
    add("warning", "validity_too_long", `${name} is valid for ${lifetimeDays} days; browsers and mobile clients refuse more than ${MAX_VALIDITY_DAYS}`);
  }

  // Chain: every certificate but a self-signed one should be followed by its issuer (the root may be left out).
  if (isSelfSigned(leaf)) {
    add("warning", "self_signed", `${name} is self-signed: every client must be told to trust it`);
  } else if (!certs.slice(1).some((c) => issuedBy(leaf, c))) {
    add("warning", "chain_incomplete", `chain incomplete: the file lacks the issuer of ${name} ("${oneLine(leaf.issuer)}"); use the full chain (certbot: fullchain.pem)`);
  } else {
    add("ok", "chain_complete", `chain: ${certs.length} certificate(s), the leaf's issuer included`);
  }
  for (const [i, c] of certs.slice(1).entries()) {
    if (new Date(c.validTo) <= now) add("error", "intermediate_expired", `intermediate certificate ${i + 1} ("${oneLine(c.subject)}") has expired`);
  }

  // Host names.
  for (const host of input.hosts ?? []) {
    if (covers(leaf, host)) add("ok", "host_covered", `covers ${host}`);
    else add("warning", "host_not_covered", `${name} does not cover ${host} (names: ${namesOf(leaf)}); clients reaching ${host} will refuse it`);
  }
  if (input.baseDomain) {
    const base = input.baseDomain.toLowerCase().replace(/\.$/, "");
    const wildcards = subjectAltNames(leaf)
      .filter((s) => s.startsWith("DNS:*."))
      .map((s) => s.slice(6).toLowerCase())
      .filter((d) => d === base || d.endsWith(`.${base}`));
    const coversBase = covers(leaf, base);
    if (!coversBase && wildcards.length === 0) {
      add("warning", "base_domain_not_covered", `${name} covers neither ${base} nor any wildcard below it (*.{tenant}.${base}); host routing will fail TLS`);
    } else {
      add("ok", "base_domain_covered", `covers ${[...(coversBase ? [base] : []), ...wildcards.map((w) => `*.${w}`)].join(", ")}`);
      // {target}.{tenant}.base needs one wildcard per tenant: *.base alone covers only one level.
      if (!wildcards.some((w) => w !== base)) {
        add("info", "no_tenant_wildcard", `no *.{tenant}.${base} name: host routing {target}.{tenant}.${base} needs one per tenant`);
      }
    }
  }
  return { ok: !findings.some((f) => f.severity === "error"), certs: certs.map(summarizeCert), findings };
}

/** Host name or IP address covered by the certificate (SANs, wildcards one level deep, as TLS clients check). */
export function covers(cert: X509Certificate, host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "");
  if (/^[\d.]+$/.test(h) || h.includes(":")) return cert.checkIP(h) !== undefined;
  return cert.checkHost(h, { subject: "default" }) !== undefined;
}

function issuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

function isSelfSigned(cert: X509Certificate): boolean {
  return cert.subject === cert.issuer && issuedBy(cert, cert);
}

/** "DNS:a, IP Address:1.2.3.4" -> ["DNS:a", "IP:1.2.3.4"]; other kinds are kept as Node names them. */
export function subjectAltNames(cert: X509Certificate): string[] {
  if (!cert.subjectAltName) return [];
  return cert.subjectAltName
    .split(/,\s*/)
    .map((s) => s.replace(/^IP Address:/, "IP:").replace(/^DNS:"(.*)"$/, "DNS:$1"))
    .filter((s) => s !== "");
}

function namesOf(cert: X509Certificate): string {
  const sans = subjectAltNames(cert).map((s) => s.replace(/^(DNS|IP):/, ""));
  return sans.length ? sans.join(", ") : `CN only: ${commonName(cert) ?? "none"}`;
}

export function commonName(cert: X509Certificate): string | undefined {
  return /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1];
}

function describe(cert: X509Certificate): string {
  return `certificate "${commonName(cert) ?? oneLine(cert.subject)}"`;
}

function oneLine(dn: string): string {
  return dn.split("\n").join(", ");
}

function day(d: Date): string {
  return d.toISOString().slice(0, 10);
}
