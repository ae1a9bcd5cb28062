import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makePki, type Pki } from "./pki.js";

export interface TestPki {
  dir: string;
  /** CA certificate (PEM file). */
  ca: string;
  /** Leaf chain (leaf + CA) and key for localhost / 127.0.0.1. */
  cert: string;
  key: string;
  /** The CA itself, for more certificates (issueCert). */
  pki: Pki;
}

/** A throw-away CA (named `caName`) and a server certificate for 127.0.0.1 and localhost, made with openssl. */
export function makeTestPki(caName = "Ferry Test CA"): TestPki {
  const pki = makePki(caName);
  const leaf = pki.issue({ cn: "localhost", sans: ["DNS:localhost", "IP:127.0.0.1"], days: 30 });
  // Leaf and CA in one file, as many servers are (mis)configured: the tests trust the CA separately anyway.
  const chain = join(pki.dir, "chain.pem");
  writeFileSync(chain, readFileSync(leaf.cert, "utf8") + readFileSync(pki.root.cert, "utf8"));
  return { dir: pki.dir, ca: pki.root.cert, cert: chain, key: leaf.key, pki };
}

/**
 * Another certificate signed by the PKI's CA: a client certificate (clientAuth, for mTLS) or a server certificate
 * for other names (e.g. one that does not name 127.0.0.1, to test the name check).
 */
export function issueCert(pki: TestPki, opts: { name: string; usage: "clientAuth" | "serverAuth"; san?: string[] }): { cert: string; key: string } {
  const issued = pki.pki.issue({ cn: opts.name, sans: opts.san, usage: opts.usage === "clientAuth" ? "client" : "server", days: 30 });
  return { cert: issued.cert, key: issued.key };
}
