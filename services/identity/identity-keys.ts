import { KeyObject } from "node:crypto";
import { create, equals } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { exportJWK, generateKeyPair, type JWK } from "jose";
import { type IdentityKeyRecord, IdentityKeyRecordSchema } from "../../gen/ferry/state/v1/state_pb.js";
import { FerryError } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import { createRateLimitedLog } from "../../core/rate-limited-log.js";
import type { PeerFaults } from "../limits/peer-faults.js";
import type { KvStore } from "../state/kv-store.js";
import { StoredRecords } from "../state/stored-records.js";
import { es256Signer } from "./compact-jws.js";
import { IDENTITY_TYP, type IdentityClaims } from "./identity-claims.js";
import { IDENTITY_KEY, jwkThumbprint, parsePublicJwk, type PublicEcJwk } from "./identity-key-record.js";

const DAY_MS = 86_400_000;
const DEFAULT_ROTATE_MS = DAY_MS;
const MIN_ROTATE_MS = 1000;
const MAX_ROTATE_MS = 30 * DAY_MS;
/** A key stays published this long after it last signed: well past the exp of its last identity. */
const RETAIN_MS = 10 * 60_000;
/**
 * The next key is published this long before it signs (at most half the
 * rotation period): longer than the JWKS's max-age, so every verifier that
 * refetches as told has it before the first identity it signs arrives.
 */
const PUBLISH_AHEAD_MS = 2 * 60_000;
/** Keys one JWKS holds at most, newest first: a flood of records in a shared bucket cannot grow it, or what we scan per change. */
export const MAX_PUBLISHED_KEYS = 256;
/** How long close() waits for the store to take its keys' retirement. */
const CLOSE_WRITE_MS = 2000;
/** Expired records one housekeeping round deletes at most (the rest go in the next rounds). */
const MAX_SWEPT_PER_ROUND = 32;

export interface IdentityKeysOptions {
  /** The relay's store: the file store alone, the cluster's bucket shared by every node. */
  store: KvStore;
  nodeId: string;
  log: Logger;
  /** Counts stored identity keys that cannot be used (source "store"). */
  faults: PeerFaults;
  /** How long one key signs before the next takes over (1 s to 30 days; default 24 h). */
  rotateEveryMs?: number;
  /** The clock (tests move it). */
  now?: () => number;
}

/** What the gateway needs: one identity signed, at once. */
export interface IdentitySigner {
  /**
   * The compact JWS of the claims, signed with this node's current key.
   * Synchronous and cheap (one ECDSA signature). Throws a FerryError
   * internal/"identity_unavailable" when this node has no key it may sign
   * with (not ready, closed, or a key its store could not replace in time).
   */
  sign(claims: IdentityClaims): string;
}

export interface IdentityKeys extends IdentitySigner {
  /** Resolves once this node's first key is published (nothing is signed before); rejects when it cannot be. */
  readonly ready: Promise<void>;
  /** The published keys that have not expired, every node's (at most MAX_PUBLISHED_KEYS, newest first). */
  jwks(): { keys: JWK[] };
  /** The same JWK Set as JSON text, built once per change: what /.well-known/ferry/jwks.json serves. */
  jwksJson(): string;
  /** Stops rotating and marks this node's keys expired in 10 minutes (identities it just signed are still in flight). */
  close(): Promise<void>;
}

/** One of this node's keys: the private half lives only here. */
interface OwnKey {
  kid: string;
  record: IdentityKeyRecord;
  signUntilMs: number;
  expireMs: number;
  sign(payload: object): string;
}

/**
 * This node's identity keys and the JWKS of every node's: each node makes its
 * own ES256 key pair, keeps the private half in memory, and publishes the
 * public half as an IdentityKeyRecord in the store BEFORE it signs with it.
 * Keys rotate every `rotateEveryMs`: the next one is published ahead, then
 * takes over, and the old one stays published for 10 minutes more. Expired
 * records, any node's, are swept. The JWKS is rebuilt whenever an identity
 * key changes in the store (any node's write), so every node serves the same set.
 */
export function createIdentityKeys(opts: IdentityKeysOptions): IdentityKeys {
  const rotateMs = opts.rotateEveryMs ?? DEFAULT_ROTATE_MS;
  if (!Number.isFinite(rotateMs) || rotateMs < MIN_ROTATE_MS || rotateMs > MAX_ROTATE_MS) {
    throw new FerryError("invalid_argument", "invalid_rotation", `identity key rotateEveryMs must be between ${MIN_ROTATE_MS} (1s) and ${MAX_ROTATE_MS} (30d), not ${rotateMs}`);
  }
  const now = opts.now ?? Date.now;
  const log = opts.log;
  const warn = createRateLimitedLog(log, now);
  const aheadMs = Math.min(PUBLISH_AHEAD_MS, rotateMs / 2);
  // Often enough to rotate on time and keep the JWKS's expiry current; at least every 30 s.
  const roundMs = Math.min(30_000, Math.max(25, rotateMs / 8));
  const records = new StoredRecords(opts.store, opts.faults);

  let current: OwnKey | undefined;
  let next: OwnKey | undefined;
  let closed = false;
  let keys: JWK[] = [];
  let json = JSON.stringify({ keys });
  let round: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;

  const rebuild = () => {
    try {
      const t = now();
      const live = records
        .readAll(IDENTITY_KEY)
        .filter((r) => timestampMs(r.expireTime!) > t)
        .sort((a, b) => timestampMs(b.createTime!) - timestampMs(a.createTime!) || (a.kid < b.kid ? -1 : 1));
      if (live.length > MAX_PUBLISHED_KEYS) opts.faults.fault("store", "too_many_identity_keys", { count: live.length });
      keys = live.slice(0, MAX_PUBLISHED_KEYS).map(publishedJwk);
      json = JSON.stringify({ keys });
    } catch (err) {
      // Runs in store watch callbacks: whatever happens, the last good set stays served.
      log.error({ err }, "rebuilding the identity key set failed");
    }
  };
  const unwatch = opts.store.watch((change) => {
    if (change.key.startsWith(IDENTITY_KEY.prefix)) rebuild();
  });

  const makeKey = async (createMs: number, signUntilMs: number): Promise<OwnKey> => {
    const pair = await generateKeyPair("ES256", { extractable: true });
    const { kty, crv, x, y } = await exportJWK(pair.publicKey);
    const jwk: PublicEcJwk = { crv: crv as "P-256", kty: kty as "EC", x: x!, y: y! };
    const kid = jwkThumbprint(jwk);
    const expireMs = signUntilMs + RETAIN_MS;
    const record = create(IdentityKeyRecordSchema, {
      kid,
      nodeId: opts.nodeId,
      publicJwk: JSON.stringify(jwk),
      createTime: timestampFromMs(createMs),
      signUntil: timestampFromMs(signUntilMs),
      expireTime: timestampFromMs(expireMs),
    });
    return { kid, record, signUntilMs, expireMs, sign: es256Signer(KeyObject.from(pair.privateKey), { kid, typ: IDENTITY_TYP }) };
  };

  const publish = (key: OwnKey) => records.serialized(() => records.put(IDENTITY_KEY, key.kid, key.record));

  /** Marks a key as signing no more, published for 10 minutes yet. */
  const retire = async (key: OwnKey, t: number) => {
    key.signUntilMs = Math.min(key.signUntilMs, t);
    key.expireMs = Math.min(key.expireMs, t + RETAIN_MS);
    key.record = create(IdentityKeyRecordSchema, { ...key.record, signUntil: timestampFromMs(key.signUntilMs), expireTime: timestampFromMs(key.expireMs) });
    await publish(key);
  };

  /** One round: rotate when due, sweep expired records, put back our own if the store lost them. */
  const housekeeping = async () => {
    const t = now();
    if (!current || closed) return;
    if (!next && t >= current.signUntilMs - aheadMs) {
      const key = await makeKey(t, Math.max(t, current.signUntilMs) + rotateMs);
      await publish(key);
      if (closed) return retire(key, t);
      next = key;
    }
    if (next && t >= current.signUntilMs) {
      const old = current;
      current = next;
      next = undefined;
      log.info({ kid: current.kid, retired: old.kid }, "identity key rotated");
      await retire(old, t).catch((err: unknown) => warn("identity_retire", { err: String(err) }, "could not mark the old identity key as retired; it expires as first published"));
    }
    await sweep(t);
    for (const key of [current, next]) {
      if (!key || closed) continue;
      const stored = records.read(IDENTITY_KEY, key.kid);
      // Deleted (a node whose clock runs ahead swept it) or overwritten: this node still signs with it.
      if (!stored || !equals(IdentityKeyRecordSchema, stored, key.record)) await publish(key);
    }
    rebuild();
  };

  const sweep = async (t: number) => {
    let swept = 0;
    for (const r of records.readAll(IDENTITY_KEY)) {
      if (swept >= MAX_SWEPT_PER_ROUND) break;
      if (timestampMs(r.expireTime!) > t || r.kid === current?.kid || r.kid === next?.kid) continue;
      swept++;
      // Another node may sweep it at the same moment: the loser finds it gone, which is what it wanted.
      await records.serialized(() => records.remove(IDENTITY_KEY, r.kid)).catch((err: unknown) => {
        warn("identity_sweep", { kid: r.kid, err: String(err) }, "could not delete an expired identity key");
      });
    }
  };

  const runRound = (): Promise<void> => {
    round ??= housekeeping()
      .catch((err: unknown) => warn("identity_round", { err: String(err) }, "identity key housekeeping failed; retrying"))
      .finally(() => (round = undefined));
    return round;
  };

  const ready = (async () => {
    const t = now();
    const key = await makeKey(t, t + rotateMs);
    await publish(key);
    current = key;
    rebuild();
    if (closed) return;
    timer = setInterval(() => void runRound(), roundMs);
    timer.unref();
  })();
  ready.catch(() => unwatch());

  return {
    ready,
    sign(claims) {
      const key = current;
      try {
        // An identity must not outlive its key's publication (a node whose rounds stalled): the next round replaces the key.
        if (closed || !key || claims.exp * 1000 > key.expireMs) throw new Error(closed ? "closed" : key ? "the key expires before the identity would" : "no key yet");
        return key.sign(claims);
      } catch (err) {
        warn("identity_sign", { err: String(err) }, "cannot sign identities: requests a policy let through fail (500 identity_unavailable)");
        throw new FerryError("internal", "identity_unavailable", "the relay cannot sign an identity for this request now; try again");
      }
    },
    jwks: () => ({ keys }),
    jwksJson: () => json,
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      const retireAll = async () => {
        await ready.catch(() => {});
        await round;
        const t = now();
        for (const key of [current, next]) {
          if (key) await retire(key, t).catch((err: unknown) => log.warn({ err: String(err), kid: key.kid }, "could not mark this node's identity key as expiring"));
        }
      };
      // A store that cannot take the write (NATS gone) must not hold up the shutdown: the key then expires as first published.
      let wait: NodeJS.Timeout | undefined;
      await Promise.race([retireAll(), new Promise((resolve) => (wait = setTimeout(resolve, CLOSE_WRITE_MS)))]);
      clearTimeout(wait);
      unwatch();
    },
  };
}

/** A stored public key (checked when it was read: identity-key-record.ts) as the JWKS lists it. */
function publishedJwk(r: IdentityKeyRecord): JWK {
  const { x, y } = parsePublicJwk(r.publicJwk) as PublicEcJwk;
  return { kty: "EC", crv: "P-256", x, y, kid: r.kid, alg: "ES256", use: "sig" };
}
