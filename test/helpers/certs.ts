import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./processes.js";

export interface TestPki {
  dir: string;
  /** CA certificate (PEM file). */
  ca: string;
  /** Leaf chain (leaf + CA) and key for localhost / 127.0.0.1. */
  cert: string;
  key: string;
}

/** A throw-away CA (named `caName`) and a server certificate for 127.0.0.1 and localhost, made with openssl. */
export function makeTestPki(caName = "Ferry Test CA"): TestPki {
  const dir = tempDir("ferry-pki-");
  const p = (name: string) => join(dir, name);
  const run = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", p("ca.key"), "-out", p("ca.pem"),
    "-days", "30", "-subj", `/CN=${caName}`);
  run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", p("server.key"), "-out", p("server.csr"),
    "-subj", "/CN=localhost");
  writeFileSync(p("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  run("x509", "-req", "-in", p("server.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"), "-CAcreateserial", "-out", p("server.pem"),
    "-days", "30", "-extfile", p("ext.cnf"));
  const chain = execFileSync("cat", [p("server.pem"), p("ca.pem")]);
  writeFileSync(p("chain.pem"), chain);
  return { dir, ca: p("ca.pem"), cert: p("chain.pem"), key: p("server.key") };
}

/**
 * Another certificate signed by the PKI's CA: a client certificate (clientAuth, for mTLS) or a server certificate
 * for other names (e.g. one that does not name 127.0.0.1, to test the name check).
 */
export function issueCert(pki: TestPki, opts: { name: string; usage: "clientAuth" | "serverAuth"; san?: string[] }): { cert: string; key: string } {
  const p = (file: string) => join(pki.dir, `${opts.name}.${file}`);
  const run = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", p("key"), "-out", p("csr"), "-subj", `/CN=${opts.name}`);
  const san = opts.san?.length ? `subjectAltName=${opts.san.join(",")}\n` : "";
  writeFileSync(p("cnf"), `${san}extendedKeyUsage=${opts.usage}\n`);
  run("x509", "-req", "-in", p("csr"), "-CA", pki.ca, "-CAkey", join(pki.dir, "ca.key"), "-CAcreateserial", "-out", p("pem"), "-days", "30",
    "-extfile", p("cnf"));
  return { cert: p("pem"), key: p("key") };
}
