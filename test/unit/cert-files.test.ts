import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { checkCertFiles, formatCertFiles } from "../../clients/doctor/cert-files.js";
import { type Issued, makePki, type Pki } from "../helpers/pki.js";

let pki: Pki;
let leaf: Issued;
let other: Issued;
let intermediate: Issued;

beforeAll(() => {
  pki = makePki();
  intermediate = pki.issue({ cn: "Intermediate", usage: "ca", days: 365 });
  leaf = pki.issue({ cn: "relay.example.com", sans: ["DNS:relay.example.com", "DNS:*.acme.relay.example.com"] }, intermediate);
  other = pki.issue({ cn: "other" }, intermediate);
});

describe("checkCertFiles", () => {
  it("passes a matching pair with a full chain and prints ✔ lines", () => {
    const r = checkCertFiles({ tlsCert: leaf.chain, tlsKey: leaf.key, publicHost: "relay.example.com", baseDomain: "relay.example.com" });
    expect(r.ok).toBe(true);
    expect(r.steps.map((s) => s.status)).toEqual(r.steps.map(() => "ok"));
    expect(r.steps.map((s) => s.code)).toEqual(["key_matches", "valid", "chain_complete", "host_covered", "base_domain_covered"]);
    expect(r.lines.every((l) => l.startsWith("✔ "))).toBe(true);
    expect(formatCertFiles(r)).toContain(`serial ${r.certs[0]!.serial}`);
  });

  it("fails a key that belongs to another certificate", () => {
    const r = checkCertFiles({ tlsCert: leaf.chain, tlsKey: other.key });
    expect(r.ok).toBe(false);
    expect(r.steps.find((s) => s.code === "key_mismatch")).toMatchObject({ status: "fail" });
    expect(r.lines.some((l) => l.startsWith("✘ ") && l.includes("does not match"))).toBe(true);
  });

  it("warns but passes an incomplete chain and an uncovered host", () => {
    const r = checkCertFiles({ tlsCert: leaf.cert, tlsKey: leaf.key, publicHost: ["elsewhere.example.com"] });
    expect(r.ok).toBe(true);
    expect(r.steps.filter((s) => s.status === "warn").map((s) => s.code)).toEqual(["chain_incomplete", "host_not_covered"]);
    expect(r.lines.filter((l) => l.startsWith("! "))).toHaveLength(2);
  });

  it("fails missing and broken files with the file named", () => {
    const bad = join(pki.dir, "broken.pem");
    writeFileSync(bad, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    const r = checkCertFiles({ tlsCert: bad, tlsKey: join(pki.dir, "nope.key") });
    expect(r.ok).toBe(false);
    expect(r.steps.map((s) => s.code)).toEqual(["cert_unreadable", "key_unreadable"]);
    expect(r.steps[1]!.message).toContain("nope.key: no such file");
  });

  it("fails an expired certificate", () => {
    const r = checkCertFiles({ tlsCert: leaf.chain, tlsKey: leaf.key, now: new Date(Date.now() + 400 * 86_400_000) });
    expect(r.ok).toBe(false);
    expect(r.steps.find((s) => s.code === "expired")).toMatchObject({ status: "fail" });
  });

  it("has a stable JSON shape", () => {
    const json = JSON.parse(formatCertFiles(checkCertFiles({ tlsCert: leaf.chain, tlsKey: leaf.key }), true));
    expect(Object.keys(json).sort()).toEqual(["certs", "ok", "steps", "tlsCert", "tlsKey"]);
    expect(json.certs[0]).toEqual({
      subject: "CN=relay.example.com",
      issuer: "CN=Intermediate",
      sans: ["DNS:relay.example.com", "DNS:*.acme.relay.example.com"],
      notBefore: expect.any(String),
      notAfter: expect.any(String),
      serial: leaf.serial,
      selfSigned: false,
      isCa: false,
    });
    expect(json.steps[0]).toEqual({ status: "ok", code: "key_matches", message: expect.any(String) });
  });
});
