import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";

/**
 * Encryption with the operator's secret keys (--secret-key-file or
 * FERRY_SECRET_KEY, the same on every cluster node): what the relay must keep
 * secret but read again (an identity provider's client secret at rest, the
 * login session in a browser's cookie), so that any node opens what another
 * sealed and nothing in the data directory or the KV bucket is in clear.
 *
 * AES-256-GCM under a key derived per purpose (HKDF-SHA256), so a session
 * cookie can never be passed off as a sealed client secret or the other way
 * round; `context` is the additional data (the tenant, the issuer...), so a
 * sealed value moved to another tenant or rule does not open. The first key
 * seals; every key opens, found by the key id in the sealed text, so a key is
 * rotated by putting a new one first and dropping the old one once nothing
 * sealed with it matters any more.
 */
export interface SecretBox {
  /** "<key id>.<base64url of iv, ciphertext and tag>": URL- and cookie-safe. */
  seal(purpose: SealPurpose, plain: string, context: string): string;
  /** The plain text, or undefined for anything that is not a value sealed for this purpose and context by one of the keys. */
  open(purpose: SealPurpose, sealed: string, context: string): string | undefined;
}

export type SealPurpose = "login-client-secret" | "login-session" | "login-state";

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** Sealed values longer than this are refused unread (a cookie is at most 4 KiB anyway). */
const MAX_SEALED_CHARS = 8192;

interface Key {
  id: string;
  derived: Map<SealPurpose, Buffer>;
  root: Buffer;
}

export function createSecretBox(keys: readonly Buffer[]): SecretBox {
  if (keys.length === 0) throw new Error("a secret box needs at least one key");
  const all: Key[] = keys.map((root) => ({ root, id: keyIdOf(root), derived: new Map() }));
  const byId = new Map(all.map((k) => [k.id, k]));
  const derive = (key: Key, purpose: SealPurpose): Buffer => {
    let d = key.derived.get(purpose);
    if (!d) {
      d = Buffer.from(hkdfSync("sha256", key.root, "ferry secret box", purpose, KEY_BYTES));
      key.derived.set(purpose, d);
    }
    return d;
  };
  return {
    seal(purpose, plain, context) {
      const key = all[0]!;
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv("aes-256-gcm", derive(key, purpose), iv);
      cipher.setAAD(Buffer.from(context));
      const body = Buffer.concat([iv, cipher.update(plain, "utf8"), cipher.final(), cipher.getAuthTag()]);
      return `${key.id}.${body.toString("base64url")}`;
    },
    open(purpose, sealed, context) {
      if (typeof sealed !== "string" || sealed.length > MAX_SEALED_CHARS) return undefined;
      const dot = sealed.indexOf(".");
      const key = dot > 0 ? byId.get(sealed.slice(0, dot)) : undefined;
      if (!key) return undefined;
      const text = sealed.slice(dot + 1);
      // One spelling only: Node's decoder skips foreign characters and ignores the last character's spare bits.
      if (!/^[A-Za-z0-9_-]+$/.test(text)) return undefined;
      const body = Buffer.from(text, "base64url");
      if (body.length < IV_BYTES + TAG_BYTES || body.toString("base64url") !== text) return undefined;
      try {
        const decipher = createDecipheriv("aes-256-gcm", derive(key, purpose), body.subarray(0, IV_BYTES));
        decipher.setAAD(Buffer.from(context));
        decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
        return Buffer.concat([decipher.update(body.subarray(IV_BYTES, body.length - TAG_BYTES)), decipher.final()]).toString("utf8");
      } catch {
        return undefined; // tampered, or sealed for another purpose or context
      }
    },
  };
}

/**
 * The keys in a --secret-key-file or FERRY_SECRET_KEY: one per line (or
 * separated by commas), each 32 bytes in base64 or base64url; blank lines
 * and lines starting with "#" are skipped. Throws an Error naming `from` and
 * the line for anything else: a short or mistyped key must stop the relay at
 * start, not weaken every seal.
 */
export function parseSecretKeys(text: string, from: string): Buffer[] {
  const keys: Buffer[] = [];
  const seen = new Set<string>();
  const entries = text.split("\n").flatMap((line, i) => (line.trim().startsWith("#") ? [] : line.split(",").map((raw) => ({ raw, line: i + 1 }))));
  entries.forEach(({ raw, line: n }) => {
    const line = raw.trim();
    if (line === "") return;
    const at = `${from}: line ${n}`;
    if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(line)) throw new Error(`${at}: not a key in base64 (make one with: openssl rand -base64 32)`);
    const key = Buffer.from(line.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, ""), "base64url");
    if (key.length !== KEY_BYTES) throw new Error(`${at}: a key of ${key.length} bytes; a key is ${KEY_BYTES} random bytes (openssl rand -base64 32)`);
    const id = keyIdOf(key);
    if (seen.has(id)) throw new Error(`${at}: this key appears twice`);
    seen.add(id);
    keys.push(key);
  });
  if (keys.length === 0) throw new Error(`${from} holds no key (make one with: openssl rand -base64 32)`);
  return keys;
}

/** 8 characters naming a key without revealing anything of it (HKDF output, not the key's own bytes). */
function keyIdOf(root: Buffer): string {
  return Buffer.from(hkdfSync("sha256", root, "ferry secret box", "key id", 6)).toString("base64url");
}
