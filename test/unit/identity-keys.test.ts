import { generateKeyPairSync } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { create, fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, type JWK, jwtVerify } from "jose";
import { afterEach, describe, expect, it } from "vitest";
import { IdentityKeyRecordSchema } from "../../gen/ferry/state/v1/state_pb.js";
import { FerryError } from "../../core/errors.js";
import type { AccessGranted } from "../../services/access/access-control.js";
import { type IdentityClaims, identityFor } from "../../services/identity/identity-claims.js";
import { IDENTITY_KEY, jwkThumbprint, type PublicEcJwk } from "../../services/identity/identity-key-record.js";
import { createIdentityKeys, type IdentityKeys, MAX_PUBLISHED_KEYS } from "../../services/identity/identity-keys.js";
import { createPeerFaults, type PeerFaults } from "../../services/limits/peer-faults.js";
import { openFileStore } from "../../services/state/file-store.js";
import type { KvStore } from "../../services/state/kv-store.js";
import { quietLog } from "../helpers/in-process.js";
import { tempDir } from "../helpers/processes.js";
import { eventually } from "../helpers/wait.js";

// The X-Ferry-Identity keys of one relay node on a real file store (state.json), with the clock in the test's hand:
// published before use, rotated, kept until their last identity has expired, swept, and stored records checked.

const MIN = 60_000;
const open: Array<{ keys: IdentityKeys; store: KvStore }> = [];
afterEach(async () => {
  for (const { keys, store } of open.splice(0)) {
    await keys.close();
    await store.close();
  }
});

interface Node {
  keys: IdentityKeys;
  store: KvStore;
  faults: PeerFaults;
  dir: string;
  clock: { t: number };
}

async function node(opts: { dir?: string; rotateEveryMs?: number; start?: number } = {}): Promise<Node> {
  const dir = opts.dir ?? tempDir();
  const store = await openFileStore(dir);
  const faults = createPeerFaults(quietLog);
  const clock = { t: opts.start ?? Date.now() };
  const keys = createIdentityKeys({ store, nodeId: "n1", log: quietLog, faults, rotateEveryMs: opts.rotateEveryMs, now: () => clock.t });
  open.push({ keys, store });
  await keys.ready;
  return { keys, store, faults, dir, clock };
}

const grant = (over: Partial<AccessGranted> = {}): AccessGranted => ({ allowed: true, rule: "partners", method: "apiKey", subject: "0123456789abcdef", consumedHeaders: [], ...over });
const facts = { tenant: "acme", target: "crm", clientAddress: "203.0.113.7" };
const signAt = (n: Node, g = grant()) => n.keys.sign(identityFor(g, facts, n.clock.t));
const kidOf = (jws: string) => decodeProtectedHeader(jws).kid;
const kids = (n: Node) => n.keys.jwks().keys.map((k) => k.kid);

/** Verifies as a target would, with jose against the node's JWKS, at the node's clock. */
async function verify(n: Node, jws: string, jwks: { keys: JWK[] } = n.keys.jwks()) {
  return jwtVerify<IdentityClaims>(jws, createLocalJWKSet(jwks), {
    algorithms: ["ES256"],
    typ: "ferry-identity+jwt",
    issuer: "ferry",
    audience: "crm.acme",
    currentDate: new Date(n.clock.t),
  });
}

/** A stored identity key of another node, as proto JSON. */
function foreignKey(fields: { createMs: number; signUntilMs?: number; expireMs?: number; jwk?: Record<string, unknown>; kid?: string; nodeId?: string }): [string, JsonValue] {
  const jwk = fields.jwk ?? publicJwkOf(newPair());
  const kid = fields.kid ?? jwkThumbprint(jwk as unknown as PublicEcJwk);
  const signUntil = fields.signUntilMs ?? fields.createMs + 86_400_000;
  const record = create(IdentityKeyRecordSchema, {
    kid,
    nodeId: fields.nodeId ?? "other",
    publicJwk: JSON.stringify(jwk),
    createTime: timestampFromMs(fields.createMs),
    signUntil: timestampFromMs(signUntil),
    expireTime: timestampFromMs(fields.expireMs ?? signUntil + 10 * MIN),
  });
  return [`identity-key.${kid}`, toJson(IdentityKeyRecordSchema, record)];
}

function newPair(): Record<string, string> {
  return generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "jwk" }) as Record<string, string>;
}
function publicJwkOf(jwk: Record<string, string>): Record<string, string> {
  return { kty: jwk.kty!, crv: jwk.crv!, x: jwk.x!, y: jwk.y! };
}

/** The state file a relay would find at start, with these entries. */
function stateFile(dir: string, entries: Array<[string, JsonValue]>): void {
  writeFileSync(join(dir, "state.json"), JSON.stringify({ format: "ferry-state/1", entries: Object.fromEntries(entries) }));
}

function storedRecord(store: KvStore, kid: string) {
  return fromJson(IdentityKeyRecordSchema, store.get(`identity-key.${kid}`)!);
}

describe("identityFor", () => {
  it.each([
    ["a client key", grant(), { sub: "0123456789abcdef", auth: "apiKey", rule: "partners" }],
    ["a token", grant({ method: "jwt", subject: "user-7", rule: "app" }), { sub: "user-7", auth: "jwt", rule: "app" }],
    ["a rule without credentials", grant({ method: "none", subject: "203.0.113.7", rule: "office" }), { sub: "203.0.113.7", auth: "none", rule: "office" }],
    ["a target no rule names", grant({ method: "none", subject: "203.0.113.7", rule: undefined }), { sub: "203.0.113.7", auth: "none" }],
  ])("%s: the contract's claims, exp 60 s after iat, a fresh 16-byte jti", (_, g, who) => {
    const at = 1_700_000_000_999;
    const claims = identityFor(g, facts, at);
    const { jti, ...rest } = JSON.parse(JSON.stringify(claims)) as Record<string, unknown>;
    expect(rest).toEqual({
      iss: "ferry",
      aud: "crm.acme",
      ...who,
      tenant: "acme",
      target: "crm",
      client_address: "203.0.113.7",
      iat: 1_700_000_000,
      exp: 1_700_000_060,
    });
    expect(Buffer.from(jti as string, "base64url")).toHaveLength(16);
    expect(jti).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(identityFor(g, facts, at).jti).not.toBe(jti);
  });

  it("jtis do not repeat across many identities (the random pool refills)", () => {
    const seen = new Set(Array.from({ length: 2000 }, () => identityFor(grant(), facts).jti));
    expect(seen.size).toBe(2000);
  });
});

describe("identity keys", () => {
  it("publish the key before signing: a JWKS of its public half only, and identities jose verifies", async () => {
    const dir = tempDir();
    const store = await openFileStore(dir);
    const keys = createIdentityKeys({ store, nodeId: "n1", log: quietLog, faults: createPeerFaults(quietLog) });
    open.push({ keys, store });
    // Not yet published: nothing is signed.
    const early = (() => {
      try {
        keys.sign(identityFor(grant(), facts));
      } catch (err) {
        return err;
      }
    })();
    expect(early).toBeInstanceOf(FerryError);
    expect(early).toMatchObject({ kind: "internal", code: "identity_unavailable" });
    expect(keys.jwks().keys).toEqual([]);
    await keys.ready;

    const [jwk] = keys.jwks().keys;
    expect(Object.keys(jwk!).sort()).toEqual(["alg", "crv", "kid", "kty", "use", "x", "y"]);
    expect(jwk).toMatchObject({ kty: "EC", crv: "P-256", alg: "ES256", use: "sig" });
    // The kid is the RFC 7638 thumbprint, as jose computes it.
    expect(jwk!.kid).toBe(await calculateJwkThumbprint(jwk!));
    expect(JSON.parse(keys.jwksJson())).toEqual(keys.jwks());

    // In the store (on disk) before first use, without the private half.
    const onDisk = JSON.parse(readFileSync(join(dir, "state.json"), "utf8")) as { entries: Record<string, Record<string, string>> };
    const stored = onDisk.entries[`identity-key.${jwk!.kid}`]!;
    expect(stored).toMatchObject({ kid: jwk!.kid, nodeId: "n1" });
    expect(JSON.parse(stored.publicJwk!)).toEqual({ crv: "P-256", kty: "EC", x: jwk!.x, y: jwk!.y });
    expect(readFileSync(join(dir, "state.json"), "utf8")).not.toMatch(/\\?"d\\?"/);
    const record = storedRecord(store, jwk!.kid!);
    expect(timestampMs(record.signUntil!) - timestampMs(record.createTime!)).toBe(86_400_000);
    expect(timestampMs(record.expireTime!) - timestampMs(record.signUntil!)).toBe(10 * MIN);

    const jws = keys.sign(identityFor(grant(), facts));
    const { payload, protectedHeader } = await jwtVerify<IdentityClaims>(jws, createLocalJWKSet(keys.jwks()), {
      algorithms: ["ES256"],
      typ: "ferry-identity+jwt",
      issuer: "ferry",
      audience: "crm.acme",
    });
    expect(protectedHeader).toEqual({ alg: "ES256", kid: jwk!.kid, typ: "ferry-identity+jwt" });
    expect(Object.keys(payload)).toEqual(["iss", "aud", "sub", "auth", "tenant", "target", "client_address", "rule", "iat", "exp", "jti"]);
    // Another audience, or a tampered payload, is refused.
    await expect(jwtVerify(jws, createLocalJWKSet(keys.jwks()), { audience: "erp.acme" })).rejects.toThrow();
    const [h, p, s] = jws.split(".");
    const forged = Buffer.from(JSON.stringify({ ...payload, sub: "admin" })).toString("base64url");
    await expect(jwtVerify(`${h}.${forged}.${s}`, createLocalJWKSet(keys.jwks()))).rejects.toThrow(/signature/);
    expect(p).not.toBe(forged);
  });

  it("rotate: the next key is published ahead, then signs; the old one stays in the JWKS until it expires, then is swept", async () => {
    const n = await node({ rotateEveryMs: 1000 });
    const start = n.clock.t;
    const [first] = kids(n);
    const old = signAt(n);
    expect(kidOf(old)).toBe(first);

    // Half a period before the switch (the publish-ahead, capped at half the period): the next key is published, not used.
    n.clock.t = start + 600;
    await eventually(() => kids(n).length === 2, "the next key in the JWKS");
    const second = kids(n).find((k) => k !== first)!;
    expect(storedRecord(n.store, second).nodeId).toBe("n1");
    expect(kidOf(signAt(n))).toBe(first);

    n.clock.t = start + 1000;
    await eventually(() => kidOf(signAt(n)) === second, "the next key to sign");
    // The old key: signs no more, published for 10 minutes yet, and its identities still verify.
    await eventually(() => timestampMs(storedRecord(n.store, first!).signUntil!) === start + 1000, "the old key retired in the store");
    expect(timestampMs(storedRecord(n.store, first!).expireTime!)).toBe(start + 1000 + 10 * MIN);
    expect(kids(n)).toEqual([second, first]);
    n.clock.t = start + 1000 + 30_000;
    expect((await verify(n, old)).payload.sub).toBe("0123456789abcdef");

    // Past its expire time it is swept from the store and the JWKS (by this node here; by any node in a cluster).
    n.clock.t = start + 1000 + 10 * MIN + 1;
    await eventually(() => n.store.get(`identity-key.${first}`) === undefined && !kids(n).includes(first), "the expired key swept");
    // The clock jumped past the second key's period too: a third key signs now, the second is retired but published.
    const third = kidOf(signAt(n));
    expect(third).not.toBe(second);
    expect(kids(n)).toContain(second);
    expect((await verify(n, signAt(n))).protectedHeader.kid).toBe(third);
  });

  it("never signs an identity that would outlive its key's publication (a node whose rounds stalled); the next round fixes it", async () => {
    const n = await node({ rotateEveryMs: 1000 });
    const first = kids(n)[0];
    // Far past the key's expire time, before any round has run at the new time.
    n.clock.t += 1000 + 10 * MIN;
    expect(() => signAt(n)).toThrow(expect.objectContaining({ code: "identity_unavailable" }));
    await eventually(() => {
      try {
        return kidOf(signAt(n)) !== first;
      } catch {
        return false;
      }
    }, "a fresh key");
    await verify(n, signAt(n));
  });

  it("close marks the key expiring in 10 minutes (not deleted: its identities are in flight) and signs no more", async () => {
    const n = await node();
    const [kid] = kids(n);
    n.clock.t += 5000;
    await n.keys.close();
    const record = storedRecord(n.store, kid!);
    expect(timestampMs(record.signUntil!)).toBe(n.clock.t);
    expect(timestampMs(record.expireTime!)).toBe(n.clock.t + 10 * MIN);
    expect(() => signAt(n)).toThrow(expect.objectContaining({ code: "identity_unavailable" }));
  });

  it("takes other nodes' keys from the store, skips and counts bad records, and sweeps expired ones", async () => {
    const dir = tempDir();
    const t = Date.now();
    const pair = newPair();
    const offCurve = { ...publicJwkOf(pair), y: publicJwkOf(newPair()).y! };
    const good = foreignKey({ createMs: t - MIN });
    const expired = foreignKey({ createMs: t - 30 * MIN, signUntilMs: t - 20 * MIN, expireMs: t - 10 * MIN });
    const bad: Array<[string, JsonValue]> = [
      ["identity-key.undecodable", null],
      foreignKey({ createMs: t, kid: "A".repeat(43) }), // kid is not the key's thumbprint
      foreignKey({ createMs: t, jwk: pair }), // the private half, published
      foreignKey({ createMs: t, jwk: offCurve }), // not a point on P-256
      foreignKey({ createMs: t, signUntilMs: t + 2 * MIN, expireMs: t + MIN }), // signs past its expiry
      foreignKey({ createMs: t, expireMs: t + 400 * 86_400_000 }), // never swept
      foreignKey({ createMs: t, nodeId: "" }),
    ];
    stateFile(dir, [good, expired, ...bad]);
    const n = await node({ dir, rotateEveryMs: 1000, start: t });

    const goodKid = (good[1] as { kid: string }).kid;
    const expiredKid = (expired[1] as { kid: string }).kid;
    await eventually(() => n.store.get(`identity-key.${expiredKid}`) === undefined, "the expired record swept");
    const own = storedRecord(n.store, kids(n).find((k) => k !== goodKid)!);
    expect(own.nodeId).toBe("n1");
    expect(kids(n).sort()).toEqual([goodKid, own.kid].sort());
    const reasons = [...n.faults.faults().values()].filter((f) => f.source === "store").map((f) => [f.reason, f.count]);
    expect(reasons.sort()).toEqual(
      [
        ["identity_key_jwk_invalid", 1],
        ["identity_key_kid_mismatch", 1],
        ["identity_key_node_invalid", 1],
        ["identity_key_private", 1],
        ["identity_key_times_invalid", 2],
        ["record_undecodable", 1],
      ].sort(),
    );
    // Bad records are left alone (evidence; a newer node may have written them); never served.
    for (const [key] of bad) expect(n.store.get(key)).not.toBeUndefined();
    expect(n.keys.jwksJson()).not.toContain(pair.d);
    // Each bad record was decoded and counted once, not once per rebuild.
    await n.store.put(...foreignKey({ createMs: t }));
    expect(kids(n)).toHaveLength(3);
    expect([...n.faults.faults().values()].reduce((sum, f) => sum + f.count, 0)).toBe(7);
  });

  it(`serves at most ${MAX_PUBLISHED_KEYS} keys, the newest, however many records the store holds`, async () => {
    const dir = tempDir();
    const t = Date.now();
    const flood = Array.from({ length: MAX_PUBLISHED_KEYS + 20 }, (_, i) => foreignKey({ createMs: t - 1000 * (i + 1) }));
    stateFile(dir, flood);
    const n = await node({ dir, start: t });
    const served = kids(n);
    expect(served).toHaveLength(MAX_PUBLISHED_KEYS);
    // Its own key is the newest; then the flood's newest, in order.
    expect(served.slice(1)).toEqual(flood.slice(0, MAX_PUBLISHED_KEYS - 1).map(([, r]) => (r as { kid: string }).kid));
    expect([...n.faults.faults().values()].some((f) => f.reason === "too_many_identity_keys")).toBe(true);
  });

  it("refuses a rotation period outside 1 s to 30 days, naming the option", async () => {
    const store = await openFileStore(tempDir());
    try {
      for (const rotateEveryMs of [10, 31 * 86_400_000, Number.NaN]) {
        expect(() => createIdentityKeys({ store, nodeId: "n1", log: quietLog, faults: createPeerFaults(quietLog), rotateEveryMs })).toThrow(/rotateEveryMs must be between/);
      }
    } finally {
      await store.close();
    }
  });
});

// The record kind is what every node trusts of a shared bucket: it must accept exactly what a node writes.
describe("IDENTITY_KEY", () => {
  it("accepts a record as createIdentityKeys writes it", () => {
    const [key, json] = foreignKey({ createMs: Date.now() });
    const record = fromJson(IdentityKeyRecordSchema, json);
    expect(IDENTITY_KEY.check(record, key.slice(IDENTITY_KEY.prefix.length))).toBeUndefined();
    expect(IDENTITY_KEY.check(record, "other")).toBe("identity_key_kid_mismatch");
  });
});
