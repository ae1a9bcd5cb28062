import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { checkCertificate, parseCertChain } from "../../core/cert-check.js";
import { type Issued, makePki, type Pki } from "../helpers/pki.js";

let pki: Pki;
let intermediate: Issued;
let leaf: Issued;
const read = (f: string) => readFileSync(f, "utf8");
const codes = (r: ReturnType<typeof checkCertificate>) => r.findings.filter((f) => f.severity !== "ok").map((f) => f.code);

beforeAll(() => {
  pki = makePki();
  intermediate = pki.issue({ cn: "Ferry Test Intermediate", usage: "ca", days: 365 });
  leaf = pki.issue({ cn: "relay.example.com", sans: ["DNS:relay.example.com", "DNS:*.acme.relay.example.com"], days: 90 }, intermediate);
});

describe("checkCertificate", () => {
  it("finds nothing wrong with a full chain that covers the names", () => {
    const r = checkCertificate({ chain: read(leaf.chain), hosts: ["relay.example.com", "app.acme.relay.example.com"], baseDomain: "relay.example.com" });
    expect(codes(r)).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.certs).toHaveLength(2);
    expect(r.certs[0]).toMatchObject({ subject: "CN=relay.example.com", issuer: "CN=Ferry Test Intermediate", serial: leaf.serial, selfSigned: false, isCa: false });
    expect(r.certs[0]!.sans).toEqual(["DNS:relay.example.com", "DNS:*.acme.relay.example.com"]);
  });

  it("warns when the chain lacks the leaf's issuer", () => {
    const r = checkCertificate({ chain: read(leaf.cert) });
    expect(codes(r)).toEqual(["chain_incomplete"]);
    expect(r.findings.find((f) => f.code === "chain_incomplete")!.message).toContain("fullchain.pem");
  });

  it("warns about hosts and a base domain the certificate does not cover", () => {
    const r = checkCertificate({ chain: read(leaf.chain), hosts: ["other.example.com"], baseDomain: "example.org" });
    expect(codes(r)).toEqual(["host_not_covered", "base_domain_not_covered"]);
    expect(r.ok).toBe(true); // warnings only
  });

  it("accepts a wildcard below the base domain and notes a missing per-tenant wildcard", () => {
    const wild = pki.issue({ cn: "wild", sans: ["DNS:*.acme.relay.example.com"] }, intermediate);
    expect(codes(checkCertificate({ chain: read(wild.chain), baseDomain: "relay.example.com" }))).toEqual([]);
    const baseOnly = pki.issue({ cn: "base", sans: ["DNS:relay.example.com"] }, intermediate);
    expect(codes(checkCertificate({ chain: read(baseOnly.chain), baseDomain: "relay.example.com" }))).toEqual(["no_tenant_wildcard"]);
  });

  it("warns before expiry, fails once expired or before its start", () => {
    const notAfter = new Date(parseCertChain(read(leaf.cert))[0]!.validTo);
    const soon = checkCertificate({ chain: read(leaf.chain), now: new Date(notAfter.getTime() - 10 * 86_400_000) });
    expect(codes(soon)).toEqual(["expires_soon"]);
    expect(soon.ok).toBe(true);
    const late = checkCertificate({ chain: read(leaf.chain), now: new Date(notAfter.getTime() + 1000) });
    expect(codes(late)).toContain("expired");
    expect(late.ok).toBe(false);
    expect(codes(checkCertificate({ chain: read(leaf.chain), now: new Date(0) }))).toContain("not_yet_valid");
  });

  it("warns about a lifetime over 398 days and about a self-signed certificate", () => {
    const long = pki.issue({ cn: "long", sans: ["DNS:long.example.com"], days: 825 });
    expect(codes(checkCertificate({ chain: [...parseCertChain(read(long.cert)), ...parseCertChain(read(pki.root.cert))] }))).toEqual(["validity_too_long"]);
    expect(codes(checkCertificate({ chain: read(pki.root.cert) }))).toEqual(["validity_too_long", "self_signed"]);
  });

  it("checks IP addresses against IP SANs", () => {
    const ip = pki.issue({ cn: "ip", sans: ["IP:127.0.0.1"] }, intermediate);
    expect(codes(checkCertificate({ chain: read(ip.chain), hosts: ["127.0.0.1"] }))).toEqual([]);
    expect(codes(checkCertificate({ chain: read(ip.chain), hosts: ["10.0.0.1"] }))).toEqual(["host_not_covered"]);
  });

  it("reports an empty file as an error", () => {
    expect(checkCertificate({ chain: "nothing here" })).toMatchObject({ ok: false, findings: [{ severity: "error", code: "no_certificate" }] });
  });
});
