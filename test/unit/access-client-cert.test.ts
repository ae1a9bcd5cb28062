import { X509Certificate } from "node:crypto";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { connect, createServer, type DetailedPeerCertificate, type PeerCertificate, type TLSSocket } from "node:tls";
import { describe, expect, it } from "vitest";
import { createClientCertVerifier, parseCaBundle } from "../../services/access/client-cert.js";
import { type Issued, makePki } from "../helpers/pki.js";

// Throw-away CAs made with openssl: the tenant's root, an intermediate below it, and a stranger's root.
const tenant = makePki("Tenant Client Root");
const intermediate = tenant.issue({ cn: "Tenant Devices CA", usage: "ca" });
const stranger = makePki("Stranger Root");
const impostor = makePki("Tenant Client Root"); // the tenant root's name, another key
const pem = (i: Issued) => readFileSync(i.cert, "utf8");
const x509 = (i: Issued) => new X509Certificate(readFileSync(i.cert));

const direct = tenant.issue({ cn: "alice", usage: "client" });
const viaIntermediate = tenant.issue({ cn: "device-1", usage: "client" }, intermediate);
const serverOnly = tenant.issue({ cn: "www", usage: "server" });
const foreign = stranger.issue({ cn: "mallory", usage: "client" });
const forged = impostor.issue({ cn: "alice", usage: "client" });

/** A client certificate the impostor signs without an authority key id: only the signature can tell it from a real one. */
function withoutKeyId(): Issued {
  const p = (ext: string) => join(impostor.dir, `bare.${ext}`);
  const run = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", p("key"));
  run("req", "-new", "-key", p("key"), "-out", p("csr"), "-subj", "/CN=alice");
  writeFileSync(p("ext"), "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\nauthorityKeyIdentifier=none\nsubjectKeyIdentifier=none\n");
  run("x509", "-req", "-in", p("csr"), "-CA", impostor.root.cert, "-CAkey", impostor.root.key, "-out", p("pem"), "-days", "30", "-extfile", p("ext"));
  return { cert: p("pem"), key: p("key"), chain: p("pem"), serial: "" };
}
const forgedBare = withoutKeyId();

/** What getPeerCertificate(true) gives: each certificate linked to its issuer's, the top one to itself. */
function peer(...chain: Issued[]): PeerCertificate {
  const certs = chain.map((c) => ({ raw: x509(c).raw }) as Partial<DetailedPeerCertificate>);
  certs.forEach((c, i) => (c.issuerCertificate = (certs[i + 1] ?? c) as DetailedPeerCertificate));
  return certs[0] as PeerCertificate;
}

const cas = parseCaBundle(pem(tenant.root)) as X509Certificate[];
const now = Date.now();
const DAY = 86_400_000;

describe("client certificates", () => {
  it.each([
    ["a certificate the tenant's CA signed", peer(direct), now, { ok: true, subject: "alice" }],
    ["one below an intermediate the client sent", peer(viaIntermediate, intermediate), now, { ok: true, subject: "device-1" }],
    ["one below an intermediate the client did not send", peer(viaIntermediate), now, { ok: false, reason: "the certificate is not issued by a CA of this tenant" }],
    ["another CA's certificate", peer(foreign), now, { ok: false, reason: "the certificate is not issued by a CA of this tenant" }],
    ["another CA's, with the tenant's root appended", peer(foreign, tenant.root), now, { ok: false, reason: "the certificate is not issued by a CA of this tenant" }],
    ["one of a CA with the tenant CA's name", peer(forged), now, { ok: false, reason: "the certificate is not issued by a CA of this tenant" }],
    ["a forged one that names the tenant's CA", peer(forgedBare), now, { ok: false, reason: "the certificate is not issued by a CA of this tenant" }],
    ["a server certificate", peer(serverOnly), now, { ok: false, reason: "the certificate is not for client authentication" }],
    ["the CA itself", peer(tenant.root), now, { ok: false, reason: "a CA certificate is not a client certificate" }],
    ["an expired one", peer(direct), now + 400 * DAY, { ok: false, reason: "the certificate is expired or not yet valid" }],
    ["one not yet valid", peer(direct), now - 2 * DAY, { ok: false, reason: "the certificate is expired or not yet valid" }],
    ["garbage", { raw: Buffer.from("not a certificate") } as PeerCertificate, now, { ok: false, reason: "the certificate could not be read" }],
    ["no certificate", {} as PeerCertificate, now, { ok: false, reason: "no certificate" }],
  ])("%s", (_name, cert, at, want) => {
    expect(createClientCertVerifier(cas).verify(cert, at)).toEqual(want);
  });

  it("takes the intermediate itself as the tenant's CA", () => {
    const only = parseCaBundle(pem(intermediate)) as X509Certificate[];
    expect(createClientCertVerifier(only).verify(peer(viaIntermediate), now)).toEqual({ ok: true, subject: "device-1" });
    expect(createClientCertVerifier(only).verify(peer(direct), now).ok).toBe(false);
  });

  it("takes any CA of a bundle", () => {
    const both = parseCaBundle(`# ours\n${pem(stranger.root)}\n# theirs\n${pem(tenant.root)}`) as X509Certificate[];
    expect(both).toHaveLength(2);
    const v = createClientCertVerifier(both);
    expect(v.verify(peer(foreign), now)).toEqual({ ok: true, subject: "mallory" });
    expect(v.verify(peer(direct), now)).toEqual({ ok: true, subject: "alice" });
  });

  it("does not remember a certificate past its expiry", () => {
    const v = createClientCertVerifier(cas);
    expect(v.verify(peer(direct), now).ok).toBe(true);
    expect(v.verify(peer(direct), now + 400 * DAY).ok).toBe(false);
  });

  it.each([
    ["a leaf", () => pem(direct), "certificate 1 (alice) is not a CA certificate (basicConstraints CA:TRUE)"],
    ["a key", () => readFileSync(direct.key, "utf8"), "contains a private key"],
    ["nothing", () => "", "has no PEM certificate"],
  ])("refuses %s as a CA bundle", (_name, text, want) => {
    expect(parseCaBundle(text())).toContain(want);
  });

  it("verifies what a real TLS handshake hands over (getPeerCertificate(true))", async () => {
    const server = tenant.issue({ cn: "localhost", sans: ["DNS:localhost", "IP:127.0.0.1"], usage: "server" });
    // Asks for a certificate, trusts none: the tenant's CAs are checked after the handshake, as the relay does.
    const listener = createServer({ key: readFileSync(server.key), cert: readFileSync(server.cert), requestCert: true, rejectUnauthorized: false });
    const seen = new Promise<PeerCertificate>((resolve) => listener.on("secureConnection", (s: TLSSocket) => {
      resolve(s.getPeerCertificate(true));
      s.end();
    }));
    await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
    try {
      const client = connect({
        host: "127.0.0.1",
        port: (listener.address() as AddressInfo).port,
        ca: readFileSync(tenant.root.cert),
        key: readFileSync(viaIntermediate.key),
        cert: readFileSync(viaIntermediate.chain), // the leaf and the intermediate
        servername: "localhost",
      });
      client.on("error", () => {});
      const cert = await seen;
      client.destroy();
      expect(createClientCertVerifier(cas).verify(cert, Date.now())).toEqual({ ok: true, subject: "device-1" });
      expect(createClientCertVerifier(parseCaBundle(pem(stranger.root)) as X509Certificate[]).verify(cert, Date.now()).ok).toBe(false);
    } finally {
      await new Promise((resolve) => listener.close(resolve));
    }
  });
});
