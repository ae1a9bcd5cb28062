import { randomBytes } from "node:crypto";
import { EXCHANGE_ID_BYTES } from "./protocol.js";

/** A fresh random exchange id. */
export function newExchangeId(): Uint8Array {
  return randomBytes(EXCHANGE_ID_BYTES);
}

/** Map key and log form of an exchange id. */
export function exchangeKey(id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString("hex");
}

/** A short random id for tunnels, nodes and connectors (96 bits, base32-ish lower case). */
export function shortId(bytes = 12): string {
  return randomBytes(bytes).toString("base64url").replace(/[-_]/g, "x").toLowerCase();
}
