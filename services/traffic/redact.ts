import { create } from "@bufbuild/protobuf";
import { type HeaderField, HeaderFieldSchema } from "../../gen/ferry/admin/v1/admin_service_pb.js";

/**
 * What a capture must never keep: credentials. Headers by name (Authorization,
 * Cookie, Set-Cookie, anything named like a key, token, secret, password or
 * session), and anywhere (other headers, query values, body text) what looks
 * like one of Ferry's own secrets or a JWT; in bodies also JSON members and
 * form fields named like a credential. A capture is read by operators and
 * tenant admins: a false positive costs a "[redacted]", a miss leaks an account.
 */
export const REDACTED = "[redacted]";

const SECRET_NAME = /auth|cookie|key|token|secret|pass|pwd|session|credential|signature|^code$|^sig$/i;
/** Ferry secrets (fck_/fat_/fcl_ + id + secret). No \b in front: a secret right after a percent-encoded "=" (%3D) has none. */
const FERRY_SECRET = /f(?:ck|at|cl)_[a-z0-9]{16}_[A-Za-z0-9_-]+/g;
/** Runs of base64url characters and dots: where a compact JWS/JWT can stand. */
const WORD = /[A-Za-z0-9_.-]+/g;

export function secretHeaderName(name: string): boolean {
  return SECRET_NAME.test(name);
}

/** A header value as a capture keeps it. */
export function redactHeader(name: string, value: string): string {
  return secretHeaderName(name) ? REDACTED : redactText(value);
}

/** Node's raw headers (name, value, name, value...) as a capture or a replay shows them: names lower-case, credentials redacted. */
export function redactedFields(rawHeaders: readonly string[]): HeaderField[] {
  const fields: HeaderField[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    fields.push(create(HeaderFieldSchema, { name, value: redactHeader(name, rawHeaders[i + 1]!) }));
  }
  return fields;
}

/** Text with every secret-looking token replaced. */
export function redactText(text: string): string {
  return text.replace(FERRY_SECRET, REDACTED).replace(WORD, redactJwts);
}

/**
 * The JWTs in a word: "eyJ" and at least 5 more characters in one dot-separated part, then two more parts
 * (three base64url parts, the first a JSON object). Part by part, so a client's "eyJ-eyJ-eyJ-..." costs one pass;
 * a regular expression restarting at every "eyJ" of a 64 KiB body took seconds of the event loop.
 */
function redactJwts(word: string): string {
  const parts = word.split(".");
  if (parts.length < 3) return word;
  let out = "";
  for (let i = 0; i < parts.length; ) {
    const part = parts[i]!;
    const at = i + 2 < parts.length ? part.indexOf("eyJ") : -1;
    if (at >= 0 && part.length - at >= 8) {
      out += `${part.slice(0, at)}${REDACTED}`;
      i += 3;
    } else {
      out += part;
      i += 1;
    }
    if (i < parts.length) out += ".";
  }
  return out;
}

/** A raw query (without "?") with the values of credential-like parameters replaced; the rest unchanged. */
export function redactQuery(query: string): string {
  if (query === "") return "";
  return query
    .split("&")
    .map((pair) => {
      const eq = pair.indexOf("=");
      const name = eq < 0 ? pair : pair.slice(0, eq);
      if (eq < 0) return redactText(pair);
      let decoded = name;
      try {
        decoded = decodeURIComponent(name);
      } catch {
        // a malformed name is matched as it is
      }
      return secretHeaderName(decoded) ? `${name}=${encodeURIComponent(REDACTED)}` : redactText(pair);
    })
    .join("&");
}

/**
 * A captured body with secrets replaced where it is text; binary bodies are kept as they are (a secret in
 * a binary body is the target's own business, and rewriting bytes would corrupt what the operator looks at).
 */
export function redactBody(body: Buffer): Buffer {
  if (body.length === 0 || body.includes(0)) return body;
  const text = body.toString("latin1");
  const clean = redactText(FORM.test(text.trimEnd()) ? redactQuery(text.trimEnd()) + text.slice(text.trimEnd().length) : text).replace(JSON_SECRET, `$1"${REDACTED}"`);
  return clean === text ? body : Buffer.from(clean, "latin1");
}

/**
 * A JSON member whose name says it holds a credential ("password": "...", "access_token": "..."), with a string
 * value, also when the kept bytes end inside that value.
 */
const JSON_SECRET = /("[^"\\]{0,64}(?:auth|key|token|secret|pass|pwd|session|credential|signature)[^"\\]{0,64}"\s*:\s*)"(?:[^"\\]|\\.)*(?:"|$)/gi;
/** A whole body of name=value pairs (a form post): redacted like a query. */
const FORM = /^[\w.%+-]+=[^&\s]*(?:&[\w.%+-]+=[^&\s]*)*$/;
