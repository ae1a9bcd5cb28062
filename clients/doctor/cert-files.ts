import { createPrivateKey, type KeyObject, type X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { type CertFinding, type CertSummary, checkCertificate, parseCertChain } from "../../core/cert-check.js";

/** `ferry doctor --certs`: the relay's own certificate and key files, before (or while) the relay serves them. */
export interface CertFilesOptions {
  tlsCert: string;
  tlsKey: string;
  /** Names clients and connectors use (--public-host). */
  publicHost?: string | string[];
  baseDomain?: string;
  now?: Date;
}

export type StepStatus = "ok" | "info" | "warn" | "fail";

export interface CertFilesStep {
  status: StepStatus;
  /** Stable name for scripts (cert-check's codes plus cert_unreadable, key_unreadable, key_matches, key_mismatch). */
  code: string;
  message: string;
}

/** Also the --json output, as is. */
export interface CertFilesReport {
  /** True when no step failed: the exit code is 0 exactly then. */
  ok: boolean;
  tlsCert: string;
  tlsKey: string;
  /** The chain in file order, leaf first. */
  certs: CertSummary[];
  steps: CertFilesStep[];
  /** The steps as a person reads them: ✔ fine, ! worth fixing, ✘ broken, · for information. */
  lines: string[];
}

const SYMBOL: Record<StepStatus, string> = { ok: "✔", info: "·", warn: "!", fail: "✘" };
const FROM_SEVERITY: Record<CertFinding["severity"], StepStatus> = { ok: "ok", info: "info", warning: "warn", error: "fail" };

export function checkCertFiles(opts: CertFilesOptions): CertFilesReport {
  const steps: CertFilesStep[] = [];
  const step = (status: StepStatus, code: string, message: string) => steps.push({ status, code, message });
  let chain: X509Certificate[] = [];
  try {
    chain = parseCertChain(readFileSync(opts.tlsCert, "utf8"));
    if (chain.length === 0) step("fail", "cert_unreadable", `${opts.tlsCert}: no PEM certificate in it`);
  } catch (err) {
    step("fail", "cert_unreadable", `${opts.tlsCert}: ${reason(err)}`);
  }
  let key: KeyObject | undefined;
  try {
    key = createPrivateKey(readFileSync(opts.tlsKey));
  } catch (err) {
    step("fail", "key_unreadable", `${opts.tlsKey}: ${reason(err)}`);
  }
  if (chain[0] && key) {
    if (chain[0].checkPrivateKey(key)) step("ok", "key_matches", `${opts.tlsKey} matches the certificate`);
    else step("fail", "key_mismatch", `${opts.tlsKey} does not match the first certificate in ${opts.tlsCert}: the relay will not start with them`);
  }
  let certs: CertSummary[] = [];
  if (chain.length > 0) {
    const hosts = opts.publicHost === undefined ? [] : ([] as string[]).concat(opts.publicHost);
    const result = checkCertificate({ chain, hosts, baseDomain: opts.baseDomain, now: opts.now });
    certs = result.certs;
    for (const f of result.findings) step(FROM_SEVERITY[f.severity], f.code, f.message);
  }
  return {
    ok: !steps.some((s) => s.status === "fail"),
    tlsCert: opts.tlsCert,
    tlsKey: opts.tlsKey,
    certs,
    steps,
    lines: steps.map((s) => `${SYMBOL[s.status]} ${s.message}`),
  };
}

/** What `ferry doctor --certs` prints: the report as JSON, or a summary of the leaf and one line per step. */
export function formatCertFiles(report: CertFilesReport, json = false): string {
  if (json) return `${JSON.stringify({ ...report, lines: undefined }, null, 2)}\n`;
  const leaf = report.certs[0];
  const head = leaf ? [`${report.tlsCert}: ${leaf.subject}, issued by ${leaf.issuer}, serial ${leaf.serial}`, `  names: ${leaf.sans.join(", ") || "none"}`] : [];
  return `${[...head, ...report.lines].join("\n")}\n`;
}

function reason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code === "ENOENT" ? "no such file" : e.message;
}
