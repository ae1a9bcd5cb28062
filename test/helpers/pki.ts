import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./processes.js";

/** A certificate made by openssl: PEM files on disk. */
export interface Issued {
  /** The certificate alone. */
  cert: string;
  key: string;
  /** The certificate followed by every issuer below the root (what a server or client presents). */
  chain: string;
  /** Serial number as Node prints it (upper-case hex). */
  serial: string;
}

export interface IssueOptions {
  /** Subject CN. */
  cn: string;
  /** subjectAltName entries, e.g. ["DNS:localhost", "IP:127.0.0.1"]. */
  sans?: string[];
  days?: number;
  /** "ec" (P-256, default) or "rsa" (2048). */
  keyType?: "ec" | "rsa";
  usage?: "server" | "client" | "ca";
}

export interface Pki {
  dir: string;
  root: Issued;
  /** Issues a certificate signed by `issuer` (default: the root). */
  issue(opts: IssueOptions, issuer?: Issued): Issued;
}

let counter = 0;

/** A throw-away root CA and the means to issue intermediates, server and client certificates below it. */
export function makePki(rootName = "Ferry Test Root"): Pki {
  const dir = tempDir("ferry-pki-");
  const run = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  const newKey = (path: string, type: "ec" | "rsa") =>
    type === "rsa" ? run("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path)
      : run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path);
  const serialOf = (cert: string) => new X509Certificate(readFileSync(cert)).serialNumber;

  const rootKey = join(dir, "root.key");
  const rootCert = join(dir, "root.pem");
  newKey(rootKey, "ec");
  writeFileSync(join(dir, "root.cnf"), "[req]\ndistinguished_name=dn\n[dn]\n[ext]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n");
  run("req", "-x509", "-new", "-key", rootKey, "-out", rootCert, "-days", "3650", "-subj", `/CN=${rootName}`,
    "-extensions", "ext", "-config", join(dir, "root.cnf"));
  const root: Issued = { cert: rootCert, key: rootKey, chain: rootCert, serial: serialOf(rootCert) };

  return {
    dir,
    root,
    issue(opts, issuer = root) {
      const name = `c${++counter}-${opts.cn.replace(/[^a-z0-9]/gi, "_")}`;
      const p = (ext: string) => join(dir, `${name}.${ext}`);
      newKey(p("key"), opts.keyType ?? "ec");
      run("req", "-new", "-key", p("key"), "-out", p("csr"), "-subj", `/CN=${opts.cn}`);
      const usage = opts.usage ?? "server";
      const lines =
        usage === "ca"
          ? ["basicConstraints=critical,CA:TRUE,pathlen:0", "keyUsage=critical,keyCertSign,cRLSign"]
          : ["basicConstraints=CA:FALSE", `extendedKeyUsage=${usage === "server" ? "serverAuth" : "clientAuth"}`];
      if (opts.sans?.length) lines.push(`subjectAltName=${opts.sans.join(",")}`);
      writeFileSync(p("ext"), `${lines.join("\n")}\n`);
      run("x509", "-req", "-in", p("csr"), "-CA", issuer.cert, "-CAkey", issuer.key, "-set_serial", `0x${Date.now().toString(16)}${counter}`,
        "-out", p("pem"), "-days", String(opts.days ?? 90), "-extfile", p("ext"));
      // The issuer's chain without the root: servers leave the root out.
      const below = issuer === root ? "" : readFileSync(issuer.chain, "utf8");
      writeFileSync(p("chain.pem"), readFileSync(p("pem"), "utf8") + below);
      return { cert: p("pem"), key: p("key"), chain: p("chain.pem"), serial: serialOf(p("pem")) };
    },
  };
}
