import { type NodeRequest, type NodeResponse, readOnlyPath, respondHeadOnly } from "../http/http-error.js";

/** Where every relay node serves the public keys of X-Ferry-Identity. */
export const JWKS_PATH = "/.well-known/ferry/jwks.json";

/**
 * GET (and HEAD) /.well-known/ferry/jwks.json: the identity keys of every
 * node, as a JWK Set built once per change (`json`). Public keys only and no
 * auth: targets and connectors fetch it. Cacheable for a minute; a verifier
 * that meets an unknown kid refetches, and a new key is published before it
 * signs.
 */
export function jwksEndpoint(json: () => string) {
  return (req: NodeRequest, res: NodeResponse): void => {
    if (!readOnlyPath(req, res, JWKS_PATH)) return;
    const text = json();
    const headers = {
      "content-type": "application/jwk-set+json",
      "cache-control": "public, max-age=60",
      "x-content-type-options": "nosniff",
      "content-length": Buffer.byteLength(text),
    };
    if (req.method === "HEAD") return respondHeadOnly(res, 200, headers);
    res.writeHead(200, headers);
    res.end(text);
  };
}
