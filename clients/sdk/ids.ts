import { randomBytes } from "node:crypto";
import { EXCHANGE_ID_BYTES } from "./protocol.js";

const POOL_IDS = 256;
let pool = Buffer.alloc(0);
let poolOffset = 0;

/** A fresh random exchange id (drawn from a pool: one getrandom call per 256 ids, not per request). */
export function newExchangeId(): Uint8Array {
  if (poolOffset >= pool.length) {
    pool = randomBytes(EXCHANGE_ID_BYTES * POOL_IDS);
    poolOffset = 0;
  }
  const id = pool.subarray(poolOffset, poolOffset + EXCHANGE_ID_BYTES);
  poolOffset += EXCHANGE_ID_BYTES;
  return id;
}

/** Map key and log form of an exchange id. */
export function exchangeKey(id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString("hex");
}

/** A short random id for tunnels, nodes and connectors (96 bits, base32-ish lower case). */
export function shortId(bytes = 12): string {
  return randomBytes(bytes).toString("base64url").replace(/[-_]/g, "x").toLowerCase();
}
