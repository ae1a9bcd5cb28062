import { X509Certificate } from "node:crypto";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { copyFileSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import { connect as tlsConnect, type ConnectionOptions } from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Issued, makePki, type Pki } from "../helpers/pki.js";
import { startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { type FerryProcess, runFerry, startConnectorProcess, startRelayProcess, tempDir } from "../helpers/processes.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { until } from "../helpers/wait.js";

let pki: Pki;
let intermediate: Issued;
let target: TestTarget;
const relays: TestRelay[] = [];
const procs: FerryProcess[] = [];

beforeAll(async () => {
  pki = makePki();
  intermediate = pki.issue({ cn: "Ferry Test Intermediate", usage: "ca", days: 365 });
  target = await startTestTarget();
});
afterEach(async () => {
  await Promise.all(procs.splice(0).map((p) => p.stop("SIGKILL")));
  await Promise.all(relays.splice(0).map((r) => r.close()));
});
afterAll(async () => {
  await target?.close();
});

const SANS = ["DNS:localhost", "IP:127.0.0.1"];

async function relayWith(cert: Issued, extra: Parameters<typeof startTestRelay>[0] = {}) {
  const r = await startTestRelay({ tlsCert: cert.chain, tlsKey: cert.key, ca: pki.root.cert, ...extra });
  relays.push(r);
  return r;
}

/** A TLS handshake alone: resolves with the server's certificate serial, or rejects with the handshake error. */
function handshake(url: string, opts: ConnectionOptions = {}): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: hostname, port: Number(port), ca: readFileSync(pki.root.cert), servername: "localhost", ...opts }, () => {
      resolve(socket.getPeerCertificate().serialNumber);
      socket.end();
    });
    socket.on("error", reject);
  });
}

const sameSerial = (a: string, b: string) => BigInt(`0x${a}`) === BigInt(`0x${b}`);

function get(url: string): Promise<number> {
  return new Promise((resolve, reject) =>
    httpsRequest(url, { ca: readFileSync(pki.root.cert) }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    })
      .on("error", reject)
      .end(),
  );
}

describe("relay certificate", () => {
  it("serves the whole chain: a client trusting only the root verifies", async () => {
    const leaf = pki.issue({ cn: "localhost", sans: SANS }, intermediate);
    const relay = await relayWith(leaf);
    expect(await get(`${relay.url}/healthz`)).toBe(200);
    expect(sameSerial(await handshake(relay.url), leaf.serial)).toBe(true);
  });

  it("refuses clients that offer only CBC or RSA key exchange suites", async () => {
    const leaf = pki.issue({ cn: "localhost", sans: SANS, keyType: "rsa" }, intermediate);
    const relay = await relayWith(leaf);
    const tls12 = { maxVersion: "TLSv1.2" as const };
    await expect(handshake(relay.url, { ...tls12, ciphers: "AES128-GCM-SHA256" })).rejects.toThrow(/handshake|cipher/i);
    await expect(handshake(relay.url, { ...tls12, ciphers: "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES128-SHA" })).rejects.toThrow(/handshake|cipher/i);
    await expect(handshake(relay.url, { ...tls12, ciphers: "ECDHE-RSA-AES128-GCM-SHA256" })).resolves.toBeTruthy();
    await expect(handshake(relay.url, { maxVersion: "TLSv1.1", minVersion: "TLSv1" })).rejects.toThrow();
    await expect(handshake(relay.url, { minVersion: "TLSv1.3" })).resolves.toBeTruthy();
  });

  it("reloads a replaced certificate without touching open tunnels", async () => {
    const dir = tempDir("ferry-live-");
    const first = pki.issue({ cn: "localhost", sans: SANS }, intermediate);
    const second = pki.issue({ cn: "localhost", sans: SANS }, intermediate);
    const certFile = join(dir, "fullchain.pem");
    const keyFile = join(dir, "privkey.pem");
    copyFileSync(first.chain, certFile);
    copyFileSync(first.key, keyFile);
    const loaded: Array<{ serial: string; reloaded: boolean }> = [];
    const errors: Error[] = [];
    const relay = await startTestRelay({
      tlsCert: certFile,
      tlsKey: keyFile,
      ca: pki.root.cert,
      listen: {
        onCertificate: (chain: X509Certificate[], reloaded: boolean) => loaded.push({ serial: chain[0]!.serialNumber, reloaded }),
        onCertificateError: (err) => errors.push(err),
      },
    });
    relays.push(relay);
    const key = await relay.tenantWithKey("acme");
    const connector = startConnectorProcess(relay.url, key, { app: target.url }, { env: { NODE_EXTRA_CA_CERTS: pki.root.cert } });
    procs.push(connector);
    await connector.waitForCount("tunnel connected", 2);
    const before = relay.relay.registry.tunnels("acme").map((t) => t.info.id).sort();

    // A broken key first: logged, and the pair in use stays.
    writeFileSync(join(dir, "privkey.pem.new"), "not a key");
    renameSync(join(dir, "privkey.pem.new"), keyFile);
    await until(() => errors.length > 0);
    expect(errors[0]!.message).toContain("privkey.pem");
    expect(sameSerial(await handshake(relay.url), first.serial)).toBe(true);

    // The way certbot and Kubernetes do it: new files renamed into place.
    copyFileSync(second.chain, join(dir, "fullchain.pem.new"));
    copyFileSync(second.key, join(dir, "privkey.pem.new"));
    renameSync(join(dir, "fullchain.pem.new"), certFile);
    renameSync(join(dir, "privkey.pem.new"), keyFile);
    const firstExpiry = (await relay.admin.listNodes({})).nodes[0]!.certificateExpireTime;
    expect(firstExpiry).toBeDefined();
    await until(() => loaded.some((l) => l.reloaded));
    expect(sameSerial(loaded.at(-1)!.serial, second.serial)).toBe(true);
    // ListNodes (the console's certificate warnings) follows the reload: the new certificate's end, no warnings.
    const [nodeNow] = (await relay.admin.listNodes({})).nodes;
    expect(timestampDate(nodeNow!.certificateExpireTime!).toISOString()).toBe(new Date(new X509Certificate(readFileSync(second.cert)).validTo).toISOString());
    expect(nodeNow!.certificateWarnings).toEqual([]);
    expect(sameSerial(await handshake(relay.url), second.serial)).toBe(true);

    // The tunnels opened under the old certificate carry on.
    expect(relay.relay.registry.tunnels("acme").map((t) => t.info.id).sort()).toEqual(before);
    expect(connector.lines.filter((l) => l.msg === "tunnel connected")).toHaveLength(2);
    const res = await new Promise<string>((resolve, reject) =>
      httpsRequest(`${relay.url}/relay/acme/app/echo`, { method: "POST", ca: readFileSync(pki.root.cert) }, (r) => {
        let body = "";
        r.on("data", (d) => (body += d));
        r.on("end", () => resolve(body));
      })
        .on("error", reject)
        .end("after reload"),
    );
    expect(res).toBe("after reload");
  });

  it("warns at start about uncovered names and an incomplete chain, one line each", async () => {
    const leaf = pki.issue({ cn: "localhost", sans: SANS }, intermediate);
    const relay = await startRelayProcess({
      args: ["--tls-cert", leaf.cert, "--tls-key", leaf.key, "--public-host", "relay.example.com", "--base-domain", "apps.example.com"],
    });
    procs.push(relay);
    const loaded = await relay.waitFor((l) => l.msg === "certificate loaded");
    expect(sameSerial(String(loaded.serial), leaf.serial)).toBe(true);
    const warnings = relay.lines.filter((l) => l.level === 40 && String(l.msg).startsWith("certificate:")).map((l) => l.check);
    expect(warnings).toEqual(["chain_incomplete", "host_not_covered", "base_domain_not_covered"]);
  });

  it("refuses to start with a key that does not match the certificate", async () => {
    const a = pki.issue({ cn: "localhost", sans: SANS }, intermediate);
    const b = pki.issue({ cn: "localhost", sans: SANS }, intermediate);
    const r = await runFerry(["relay", "--listen", "127.0.0.1:0", "--data", tempDir(), "--tls-cert", a.chain, "--tls-key", b.key], {
      FERRY_ADMIN_TOKEN: "test-admin-token-0123456789",
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr + r.stdout).toContain("does not match the first certificate");
  });
});
