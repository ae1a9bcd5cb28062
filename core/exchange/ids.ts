import { randomBytes } from "node:crypto";
import { EXCHANGE_ID_BYTES } from "./protocol.js";

// Ids are drawn from a pool: one getrandom call per 4 KiB, not one per request (it showed up at ~8% of the relay's CPU).
const POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let poolOffset = 0;

function take(bytes: number): Buffer {
  if (poolOffset + bytes > pool.length) {
    pool = randomBytes(POOL_BYTES);
    poolOffset = 0;
  }
  const out = pool.subarray(poolOffset, poolOffset + bytes);
  poolOffset += bytes;
  return out;
}

/** A fresh random exchange id. */
export function newExchangeId(): Uint8Array {
  return take(EXCHANGE_ID_BYTES);
}

/** `bytes` random bytes as lower-case hex (trace and span ids; not for secrets). */
export function randomHex(bytes: number): string {
  return take(bytes).toString("hex");
}

/** Map key and log form of an exchange id. */
export function exchangeKey(id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString("hex");
}

/** A short random id for tunnels, nodes and connectors (96 bits, base32-ish lower case). */
export function shortId(bytes = 12): string {
  return randomBytes(bytes).toString("base64url").replace(/[-_]/g, "x").toLowerCase();
}
