import type { X509Certificate } from "node:crypto";
import { checkCertificate } from "../../core/cert-check.js";
import type { Logger } from "../../core/logger.js";
import type { CertificateFacts } from "../admin/directory.js";

export interface CertLogNames {
  /** Names clients and connectors use (--public-host). */
  hosts: string[];
  /** --base-domain, for host routing. */
  baseDomain?: string;
}

/**
 * The server's certificate events as log lines: one info line for the pair in
 * use, one warn (or error) line per problem, each saying what to do, at start
 * and at every reload. The relay serves whatever it was given: a warning here
 * never stops it, since a slightly wrong certificate beats no service.
 */
export function certificateLog(log: Logger, names: CertLogNames) {
  let current: CertificateFacts | undefined;
  return {
    /** The certificate in use and its problems, as last logged (for ListNodes); undefined without TLS. */
    get facts() {
      return current;
    },
    onCertificate(chain: X509Certificate[], reloaded: boolean) {
      const result = checkCertificate({ chain, hosts: names.hosts, baseDomain: names.baseDomain });
      const leaf = result.certs[0];
      if (leaf) {
        current = { expireTime: new Date(leaf.notAfter), warnings: result.findings.filter((f) => f.severity === "warning" || f.severity === "error").map((f) => f.message) };
      }
      if (leaf) {
        log.info(
          { subject: leaf.subject, issuer: leaf.issuer, notAfter: leaf.notAfter, serial: leaf.serial, chainLength: chain.length },
          reloaded ? "certificate reloaded" : "certificate loaded",
        );
      }
      for (const f of result.findings) {
        if (f.severity === "warning") log.warn({ check: f.code }, `certificate: ${f.message}`);
        else if (f.severity === "error") log.error({ check: f.code }, `certificate: ${f.message}`);
      }
    },
    onCertificateError(err: Error) {
      log.error({ err: err.message }, "certificate changed but cannot be used; keeping the one in use");
    },
  };
}
