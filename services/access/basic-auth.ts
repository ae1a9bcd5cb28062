import { createHmac, randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import type { BasicUser } from "../../gen/ferry/access/v1/access_policy_pb.js";
import { setNewest } from "../../core/bounded-map.js";

/**
 * HTTP Basic for old devices that can do nothing else: users with salted
 * scrypt hashes ("scrypt$N$r$p$<salt base64url>$<hash base64url>"), never a
 * password at rest. scrypt is meant to be slow, and anyone on the internet
 * can make the relay run it, so three things keep that cheap: a gate on how
 * many run at once (a flood is refused, not queued without end), one run for
 * any number of requests carrying the same credentials at the same time (a
 * browser opens six connections at once), and a short-lived cache of
 * credentials that verified (every request of a page carries them again).
 */

/** What `hashPassword` makes: the cost parameters OWASP names for scrypt, a 16-byte salt, a 32-byte hash. */
export const SCRYPT_DEFAULTS = Object.freeze({ N: 2 ** 15, r: 8, p: 1, saltBytes: 16, hashBytes: 32 });

/** Bounds of a stored hash's parameters: weaker ones make a leaked policy cheap to crack, stronger ones a request costly. */
const LIMITS = { minLog2N: 14, maxMemoryBytes: 64 * 1024 * 1024, maxR: 32, maxP: 4, minBytes: 16, maxBytes: 64 };
/** Longer passwords are refused unread: the header is bounded anyway, and nobody types this much. */
export const MAX_PASSWORD_CHARS = 1024;

export interface ScryptHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

/** Parses a stored hash, or says what is wrong with it (the policy check puts it in its message). */
export function parsePasswordHash(text: string): ScryptHash | string {
  const parts = text.split("$");
  const form = `is not a password hash of the form scrypt$N$r$p$<salt base64url>$<hash base64url> (make one with \`ferry admin access hash-password\`)`;
  if (parts.length !== 6 || parts[0] !== "scrypt") return form;
  const [, n, r, p, salt, hash] = parts as [string, string, string, string, string, string];
  if (![n, r, p].every((x) => /^[1-9]\d{0,9}$/.test(x))) return form;
  const N = Number(n);
  const R = Number(r);
  const P = Number(p);
  if (!Number.isInteger(Math.log2(N)) || N < 2 ** LIMITS.minLog2N) return `has N=${N}: N must be a power of two, at least 2^${LIMITS.minLog2N}`;
  if (R > LIMITS.maxR || P > LIMITS.maxP) return `has r=${R}, p=${P}: r may be 1-${LIMITS.maxR}, p 1-${LIMITS.maxP}`;
  if (memoryOf(N, R) > LIMITS.maxMemoryBytes) return `needs ${memoryOf(N, R) >> 20} MiB per check (128*N*r): at most ${LIMITS.maxMemoryBytes >> 20} MiB`;
  const bytes = (b64: string) => (/^[A-Za-z0-9_-]+$/.test(b64) ? Buffer.from(b64, "base64url") : Buffer.alloc(0));
  const saltBytes = bytes(salt);
  const hashBytes = bytes(hash);
  const sized = (b: Buffer) => b.length >= LIMITS.minBytes && b.length <= LIMITS.maxBytes;
  if (!sized(saltBytes) || !sized(hashBytes)) return `has a salt or hash that is not ${LIMITS.minBytes}-${LIMITS.maxBytes} bytes of base64url`;
  return { N, r: R, p: P, salt: saltBytes, hash: hashBytes };
}

/** The hash of a new password, for the CLI (`ferry admin access hash-password`). */
export async function hashPassword(password: string): Promise<string> {
  const { N, r, p, saltBytes, hashBytes } = SCRYPT_DEFAULTS;
  const salt = randomBytes(saltBytes);
  const hash = await derive(password, { N, r, p, salt, hash: Buffer.alloc(hashBytes) });
  return `scrypt$${N}$${r}$${p}$${salt.toString("base64url")}$${hash.toString("base64url")}`;
}

export interface BasicCredentials {
  user: string;
  password: string;
}

/**
 * The user and password of an `Authorization: Basic` header (scheme
 * case-insensitive, UTF-8 as RFC 7617 says); undefined when the header is
 * not Basic at all, "malformed" when it is but cannot be read.
 */
export function parseBasicAuthorization(header: string | undefined): BasicCredentials | "malformed" | undefined {
  if (header === undefined || !/^basic(\s|$)/i.test(header)) return undefined;
  const token = header.slice(5).trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(token) || token.length > 4 * MAX_PASSWORD_CHARS) return "malformed";
  const decoded = Buffer.from(token, "base64");
  if (decoded.toString("base64").replace(/=+$/, "") !== token.replace(/=+$/, "")) return "malformed";
  const text = new TextDecoder("utf-8", { fatal: false }).decode(decoded);
  const colon = text.indexOf(":");
  if (colon <= 0) return "malformed";
  return { user: text.slice(0, colon), password: text.slice(colon + 1) };
}

/**
 * How many scrypt runs may be under way at once on this node, and how many
 * may wait for one. They run on libuv's thread pool (4 threads unless
 * UV_THREADPOOL_SIZE says otherwise), which file and DNS work share: the
 * default of 2 leaves it half free, whatever a flood of passwords does.
 */
export interface ScryptGate {
  /** Runs `job` when a place is free; undefined (job not run) when every place and every waiting place is taken. */
  run<T>(job: () => Promise<T>): Promise<T> | undefined;
  readonly running: number;
  readonly waiting: number;
}

export function createScryptGate(opts: { maxConcurrent?: number; maxWaiting?: number } = {}): ScryptGate {
  const maxConcurrent = opts.maxConcurrent ?? 2;
  const maxWaiting = opts.maxWaiting ?? 32;
  let running = 0;
  const queue: (() => void)[] = [];
  // A finished job hands its place straight to the next in line, so `running` never dips below what is queued.
  const release = () => {
    const next = queue.shift();
    if (next) next();
    else running--;
  };
  const start = <T>(job: () => Promise<T>): Promise<T> => {
    let result: Promise<T>;
    try {
      result = job();
    } catch (err) {
      result = Promise.reject(err);
    }
    return result.finally(release);
  };
  return {
    run(job) {
      if (running < maxConcurrent) {
        running++;
        return start(job);
      }
      if (queue.length >= maxWaiting) return undefined;
      return new Promise<void>((resolve) => queue.push(resolve)).then(() => start(job));
    },
    get running() {
      return running;
    },
    get waiting() {
      return queue.length;
    },
  };
}

export type BasicVerdict = "ok" | "invalid" | "busy";

export interface BasicVerifier {
  /** Never rejects. "busy": the gate is full, nothing was checked. */
  verify(credentials: BasicCredentials): Promise<BasicVerdict>;
}

/** How long credentials that verified are taken without another scrypt run, and how many are remembered. */
const CACHE_TTL_MS = 5 * 60_000;
const CACHE_SIZE = 1000;

/**
 * Checks credentials against a rule's users (already validated). One per
 * compiled rule: a policy change drops its cache. An unknown user costs one
 * scrypt run against a stand-in hash, so timing does not tell which users
 * exist; a known one is compared with timingSafeEqual.
 */
export function createBasicVerifier(users: readonly BasicUser[], gate: ScryptGate, opts: { now?: () => number } = {}): BasicVerifier {
  const now = opts.now ?? Date.now;
  const hashes = new Map<string, ScryptHash>();
  for (const u of users) {
    const parsed = parsePasswordHash(u.passwordHash);
    if (typeof parsed === "string") throw new Error(`basic user "${u.name}": password hash ${parsed}`);
    hashes.set(u.name, parsed);
  }
  // Keys are HMACs under a key of this verifier: the cache holds nothing a memory dump could turn into a password.
  const cacheKey = randomBytes(32);
  const verified = new Map<string, number>();
  const inFlight = new Map<string, Promise<BasicVerdict>>();

  const check = async ({ user, password }: BasicCredentials): Promise<boolean> => {
    const stored = hashes.get(user);
    const derived = await derive(password, stored ?? STAND_IN);
    return stored !== undefined && timingSafeEqual(derived, stored.hash);
  };

  return {
    async verify(credentials) {
      if (credentials.password.length > MAX_PASSWORD_CHARS) return "invalid";
      const key = createHmac("sha256", cacheKey).update(JSON.stringify([credentials.user, credentials.password])).digest("base64");
      const until = verified.get(key);
      if (until !== undefined) {
        // A hit keeps its place among the newest: a device polling steadily is not evicted as if idle.
        if (until > now()) {
          setNewest(verified, key, until, CACHE_SIZE);
          return "ok";
        }
        verified.delete(key);
      }
      const pending = inFlight.get(key);
      if (pending) return pending;
      const run = gate.run(() => check(credentials));
      if (!run) return "busy";
      const verdict = run.then(
        (ok): BasicVerdict => {
          if (ok) setNewest(verified, key, now() + CACHE_TTL_MS, CACHE_SIZE);
          return ok ? "ok" : "invalid";
        },
        (): BasicVerdict => "invalid",
      );
      inFlight.set(key, verdict);
      void verdict.finally(() => inFlight.delete(key));
      return verdict;
    },
  };
}

/** What an unknown user's password is hashed against: the default cost, so the time is that of a real user. */
const STAND_IN: ScryptHash = {
  ...SCRYPT_DEFAULTS,
  salt: randomBytes(SCRYPT_DEFAULTS.saltBytes),
  hash: randomBytes(SCRYPT_DEFAULTS.hashBytes),
};

function derive(password: string, params: ScryptHash): Promise<Buffer> {
  const { N, r, p } = params;
  return new Promise((resolve, reject) => {
    // Node refuses anything over 32 MiB unless told; N=2^15, r=8 needs exactly that, so give twice the working set.
    scrypt(password.normalize("NFC"), params.salt, params.hash.length, { N, r, p, maxmem: 2 * memoryOf(N, r) + 1024 * 1024 }, (err, key) =>
      err ? reject(err) : resolve(key),
    );
  });
}

/** scrypt's working set: 128 * N * r bytes. */
function memoryOf(N: number, r: number): number {
  return 128 * N * r;
}
