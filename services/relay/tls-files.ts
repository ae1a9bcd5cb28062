import { createPrivateKey, type X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import type { SecureContextOptions } from "node:tls";
import { parseCertChain } from "../../core/cert-check.js";

/**
 * TLS 1.2 suites: forward secrecy (ECDHE) and AEAD only, which is also what
 * HTTP/2 requires (RFC 9113 §9.2.2). TLS 1.3 suites are all AEAD and named so
 * that Node keeps them: a list without them would switch TLS 1.3 off.
 */
export const TLS_CIPHERS = [
  "TLS_AES_128_GCM_SHA256",
  "TLS_AES_256_GCM_SHA384",
  "TLS_CHACHA20_POLY1305_SHA256",
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
].join(":");

/** The server's certificate files, read and checked together. */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  /** Parsed chain, leaf first. */
  chain: X509Certificate[];
}

/**
 * Reads the certificate chain and key and checks that they belong together,
 * so a half-replaced pair (certbot writes one file, then the other) or a
 * broken file never reaches the server. Throws an Error saying which file.
 */
export function loadTlsMaterial(certFile: string, keyFile: string): TlsMaterial {
  const cert = readFileSync(certFile);
  const key = readFileSync(keyFile);
  let chain: X509Certificate[];
  try {
    chain = parseCertChain(cert.toString("utf8"));
  } catch (err) {
    throw filesError(`${certFile}: not a valid PEM certificate (${(err as Error).message})`);
  }
  if (chain.length === 0) throw filesError(`${certFile}: no PEM certificate in it`);
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw filesError(`${keyFile}: not a valid PEM private key (${(err as Error).message})`);
  }
  if (!chain[0]!.checkPrivateKey(privateKey)) throw filesError(`${keyFile} does not match the first certificate in ${certFile}`);
  return { cert, key, chain };
}

/** What the secure server's context is made of; `setSecureContext` takes the same on reload. */
export function secureContextOptions(material: TlsMaterial, clientCa?: Buffer): SecureContextOptions {
  return {
    cert: material.cert,
    key: material.key,
    ...(clientCa ? { ca: clientCa } : {}),
    minVersion: "TLSv1.2",
    ciphers: TLS_CIPHERS,
    // The server's order: clients that list weak-but-allowed suites first still get the strongest.
    honorCipherOrder: true,
  };
}

/** Errors about the files' content carry this code, so the CLI can name the flags. */
export const TLS_FILES_ERROR = "ERR_TLS_FILES";

function filesError(message: string): Error {
  return Object.assign(new Error(message), { code: TLS_FILES_ERROR });
}
