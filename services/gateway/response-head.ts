import type { Header, ResponseHead } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { FerryError } from "../../core/errors.js";
import { endToEndHeaders, firstOfSingleValue, isFieldName, isFieldValue, toFlatList } from "../../core/headers.js";

/** Why a connector's answer was not passed on; fixed strings, the `reason` of the connector fault counted for it. */
export type BadResponseReason =
  | "bad_status"
  | "bad_response_header"
  | "bad_content_length"
  | "body_shorter_than_content_length"
  | "body_longer_than_content_length"
  | "body_on_bodiless_response";

/**
 * A connector's answer the relay will not pass on. Before the head has gone
 * out the client gets 502 bad_response; after it, a broken response (HTTP/1.1
 * connection closed, HTTP/2 stream reset), never bytes it could misframe.
 */
export class BadResponse extends FerryError {
  constructor(
    readonly reason: BadResponseReason,
    message: string,
  ) {
    super("bad_gateway", "bad_response", `the connector's response was not valid HTTP: ${message}`);
  }
}

/** A response head as the relay frames it for the client. */
export interface FramedResponse {
  status: number;
  /** End-to-end, valid, single-value fields once: what Node's writers accept for either protocol. */
  headers: Header[];
  /** The declared body length, which the body must match exactly; undefined without Content-Length. */
  length: number | undefined;
  /** No body may follow the head (HEAD, 204, 304): the client reads none, so none is written. */
  bodiless: boolean;
}

/**
 * Response headers of the target the relay replaces with its own or speaks
 * alone: X-Request-Id, and Alt-Svc (where browsers should reach this origin
 * is the relay's to say, not one target's).
 */
const TARGET_DROPPED: ReadonlySet<string> = new Set(["x-request-id", "alt-svc"]);

/** Content-Length is 1*DIGIT (RFC 9110 §8.6); 15 digits stay exact as a JavaScript number. */
const CONTENT_LENGTH = /^\d{1,15}$/;

/**
 * Checks what the connector answered before any of it reaches Node's
 * writers, which throw on what they cannot write, or a client, which might
 * frame it differently from us (RFC 9112 §6.3): a final status 200-599 (101
 * only to an upgrade), header names that are tokens, values without control
 * characters, at most one Content-Length and a valid one. Hop-by-hop fields are
 * dropped (Transfer-Encoding included: the relay frames the body itself), and
 * single-value fields keep their first value. Throws BadResponse.
 */
export function frameResponse(head: ResponseHead, request: { method: string; upgrade: boolean }): FramedResponse {
  const status = head.status;
  const switching = status === 101 && request.upgrade;
  // 1xx are interim answers (the connector keeps them on its own hop); a final one would leave the client waiting.
  if (!switching && !(status >= 200 && status <= 599)) {
    throw new BadResponse("bad_status", `status ${status} is not a final status (200-599${request.upgrade ? ", or 101 to this upgrade" : ""})`);
  }
  for (const { name, value } of head.headers) {
    // A pseudo-header fails here too: ':' is not a token character.
    if (!isFieldName(name)) throw new BadResponse("bad_response_header", "a header name is not a token");
    if (!isFieldValue(value)) throw new BadResponse("bad_response_header", "a header value has a control character");
  }
  let headers = endToEndHeaders(toFlatList(head.headers), { drop: TARGET_DROPPED, upgrade: switching });
  const lengths = headers.filter((h) => h.name === "content-length");
  if (lengths.length > 1) throw new BadResponse("bad_content_length", "more than one Content-Length");
  const declared = lengths[0]?.value;
  if (declared !== undefined && !CONTENT_LENGTH.test(declared)) throw new BadResponse("bad_content_length", "Content-Length is not a number");
  const bodiless = request.method === "HEAD" || status === 204 || status === 304;
  // A 204 has no content at all (RFC 9110 §8.6); a 304's and a HEAD's Content-Length describe the GET's.
  if (status === 204 && declared !== undefined) headers = headers.filter((h) => h.name !== "content-length");
  const length = declared === undefined || bodiless ? undefined : Number(declared);
  // An HTTP/1.1 client would wait for those bytes, and take the next answer on the connection for them.
  if (head.endStream && length !== undefined && length > 0) {
    throw new BadResponse("body_shorter_than_content_length", "the head ends the response but declares a body");
  }
  return { status, headers: firstOfSingleValue(headers), length, bodiless };
}
