import { type KeyObject, sign } from "node:crypto";

/**
 * A compact JWS signer for one ES256 key (RFC 7515 §7.1, RFC 7518 §3.4): the
 * protected header is encoded once, each call encodes the payload and signs.
 * node:crypto's synchronous sign instead of jose's: the same signature in a
 * third of the time per request (no WebCrypto job, no promise), measured on
 * the relay's hot path; jose verifies what this writes (the tests do).
 */
export function es256Signer(privateKey: KeyObject, header: { kid: string; typ: string }): (payload: object) => string {
  if (privateKey.asymmetricKeyType !== "ec" || privateKey.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    throw new Error("ES256 needs a P-256 private key");
  }
  const prefix = `${Buffer.from(JSON.stringify({ alg: "ES256", kid: header.kid, typ: header.typ })).toString("base64url")}.`;
  return (payload) => {
    const input = prefix + Buffer.from(JSON.stringify(payload)).toString("base64url");
    // JWS wants r || s (64 bytes), not DER.
    const signature = sign("sha256", Buffer.from(input, "latin1"), { key: privateKey, dsaEncoding: "ieee-p1363" });
    return `${input}.${signature.toString("base64url")}`;
  };
}
