import { fromBinary } from "@bufbuild/protobuf";
import {
  type Accepted,
  type DisconnectRequest,
  DisconnectRequestSchema,
  FeedInterestSchema,
  type FramesRequest,
  FramesRequestSchema,
  HeartbeatSchema,
  type OpenExchange,
  OpenExchangeSchema,
  type OpenResult,
  OpenResultSchema,
  PeerLinkHelloSchema,
  PeerLinkKind,
  type PeerLinkWelcome,
  PeerLinkWelcomeSchema,
} from "../../gen/ferry/cluster/v1/cluster_pb.js";
import { type ExchangeSummary, ExchangeSummarySchema } from "../../gen/ferry/admin/v1/admin_service_pb.js";
import { type ErrorKind, FerryError, HTTP_STATUS } from "../../core/errors.js";
import { isDnsLabel } from "../../core/names.js";
import { EXCHANGE_ID_BYTES, MAX_FRAME_SIZE, MAX_WINDOW, MIN_FRAME_SIZE, MIN_WINDOW } from "../../core/exchange/protocol.js";
import { type FramesKind, NODE_ID_PATTERN } from "./subjects.js";

/**
 * Everything a node reads from NATS, checked where it enters. Anyone who can
 * publish on the cluster's subjects can send anything, so each message is
 * either a value the rest of the code may trust or a fixed reason (a metric
 * label: never peer input) to count and drop it for.
 */
export type Checked<T> = { ok: true; value: T } | { ok: false; reason: string };

const ok = <T>(value: T): Checked<T> => ({ ok: true, value });
const bad = <T>(reason: string): Checked<T> => ({ ok: false, reason });

/** Longest error message or reason passed on from another node (it reaches clients, logs and audit). */
const MAX_TEXT = 1024;
const MAX_RETRY_AFTER_SECONDS = 3600;
const ERROR_CODE = /^[a-z][a-z0-9_]{0,63}$/;
/** Connector ids come from Hello, which allows up to 128 characters; no control characters. */
const CONNECTOR_ID = /^[^\x00-\x1f\x7f]{1,128}$/;
const CONTROL_CHARS = /[\x00-\x1f\x7f]/;

function decode<T>(what: string, parse: () => T): Checked<T> {
  try {
    return ok(parse());
  } catch {
    return bad(`malformed ${what}`);
  }
}

/** An OpenExchange from the node where a client arrived; its exchange id is copied out of the NATS buffer. */
export function readOpenExchange(bytes: Uint8Array): Checked<OpenExchange> {
  const d = decode("open exchange", () => fromBinary(OpenExchangeSchema, bytes));
  return d.ok ? checkOpenExchange(d.value) : d;
}

/** An OpenExchange decoded already (one that came inside a peer link's message): readOpenExchange's checks. */
export function checkOpenExchange(open: OpenExchange): Checked<OpenExchange> {
  if (open.exchangeId.length !== EXCHANGE_ID_BYTES) return bad("open exchange with a bad exchange id");
  if (!isDnsLabel(open.tenant) || !isDnsLabel(open.target)) return bad("open exchange with a bad tenant or target");
  if (!NODE_ID_PATTERN.test(open.ingressNode)) return bad("open exchange with a bad node id");
  open.exchangeId = Uint8Array.from(open.exchangeId);
  return ok(open);
}

/**
 * The answer to our OpenExchange: Accepted, or the node's refusal as the
 * FerryError the client gets (a known kind, a code of ours, bounded text).
 */
export function readOpenResult(bytes: Uint8Array): Checked<Accepted | FerryError> {
  const d = decode("open result", () => fromBinary(OpenResultSchema, bytes));
  return d.ok ? checkOpenResult(d.value) : d;
}

/** An OpenResult decoded already (from a peer link's message): readOpenResult's checks. */
export function checkOpenResult(openResult: OpenResult): Checked<Accepted | FerryError> {
  const result = openResult.result;
  if (result.case === "accepted") {
    const a = result.value;
    // The egress node's id becomes a subject we publish on: a dot or a wildcard there would be someone else's.
    if (!NODE_ID_PATTERN.test(a.egressNode)) return bad("accept with a bad node id");
    if (a.requestWindow < MIN_WINDOW || a.requestWindow > MAX_WINDOW) return bad("accept with a bad window");
    if (a.maxFrameSize !== 0 && (a.maxFrameSize < MIN_FRAME_SIZE || a.maxFrameSize > MAX_FRAME_SIZE)) return bad("accept with a bad frame size");
    return ok(a);
  }
  if (result.case === "refused") {
    const r = result.value;
    if (!Object.hasOwn(HTTP_STATUS, r.kind) || !ERROR_CODE.test(r.code)) return bad("refusal with an unknown kind or code");
    if (r.message.length > MAX_TEXT || r.retryAfterSeconds > MAX_RETRY_AFTER_SECONDS) return bad("refusal out of range");
    return ok(new FerryError(r.kind as ErrorKind, r.code, r.message, r.retryAfterSeconds ? { retryAfterSeconds: r.retryAfterSeconds } : {}));
  }
  return bad("empty open result");
}

/** A heartbeat on ferry.heartbeat.<node>: the node it names must be the one in its subject. */
export function readHeartbeat(subject: string, bytes: Uint8Array): Checked<string> {
  const beat = readBeat(subject, bytes);
  return beat.ok ? ok(beat.value.node) : beat;
}

/** What a heartbeat says of its node (readBeat). */
export interface Beat {
  node: string;
  /** The node is shutting down. */
  draining: boolean;
  /** Where it takes peer links (HOST:PORT), or "". */
  linkAddress: string;
  /** SHA-256 of the token it presents on the links it opens; empty when it sent none. */
  peerTokenDigest: Uint8Array;
}

/** A link_address: HOST:PORT (a name, IPv4 or [IPv6]), nothing more; a heartbeat could point us anywhere. */
const LINK_ADDRESS = /^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):(\d{1,5})$/;
const isLinkAddress = (a: string): boolean => {
  const port = Number(LINK_ADDRESS.exec(a)?.[1] ?? 0);
  return port >= 1 && port <= 65535;
};

/** A heartbeat (readHeartbeat) with what it says of its node. */
export function readBeat(subject: string, bytes: Uint8Array): Checked<Beat> {
  const node = subject.slice(subject.lastIndexOf(".") + 1);
  if (!NODE_ID_PATTERN.test(node)) return bad("heartbeat with a bad node id");
  const d = decode("heartbeat", () => fromBinary(HeartbeatSchema, bytes));
  if (!d.ok) return d;
  const hb = d.value;
  if (hb.nodeId !== node) return bad("heartbeat for another node");
  if (hb.linkAddress !== "" && !isLinkAddress(hb.linkAddress)) return bad("heartbeat with a bad link address");
  if (hb.peerTokenDigest.length !== 0 && hb.peerTokenDigest.length !== 32) return bad("heartbeat with a bad peer token digest");
  return ok({ node, draining: hb.draining, linkAddress: hb.linkAddress, peerTokenDigest: hb.peerTokenDigest });
}

/** The first byte of a FrameBatch message (field 2, length-delimited): a peer link's batches, read by the tunnel's codec. */
const FRAMES_TAG = 0x12;

/** Whether a peer link message is a batch of frames (deliverBatch), not an open or its answer (readLinkMessage). */
export const isFrameBatch = (message: Uint8Array): boolean => message[0] === FRAMES_TAG;

/** A peer link message that is not a batch: an open or an answer (each checked where it is used). */
export function readLinkMessage(bytes: Uint8Array): Checked<FramesRequest> {
  return decode("peer link message", () => fromBinary(FramesRequestSchema, bytes));
}

/** The longest token a hello may present: ours are 43 characters (32 random bytes, base64url). */
const MAX_LINK_TOKEN = 256;

/** A PeerLinkHello: who opens a link, and for which end; the token is checked by the caller. */
export function readLinkHello(bytes: Uint8Array): Checked<{ node: string; token: string; kind: FramesKind }> {
  const d = decode("peer link hello", () => fromBinary(PeerLinkHelloSchema, bytes));
  if (!d.ok) return d;
  const { nodeId, token, kind } = d.value;
  const k = kind === PeerLinkKind.REQUESTS ? "req" : kind === PeerLinkKind.RESPONSES ? "res" : undefined;
  if (!NODE_ID_PATTERN.test(nodeId) || k === undefined) return bad("peer link with a bad node or kind");
  if (token.length > MAX_LINK_TOKEN) return bad("peer link with a bad token");
  return ok({ node: nodeId, token, kind: k });
}

/** A PeerLinkWelcome: the verdict on our hello; its reason only for our log (bounded, no control characters). */
export function readLinkWelcome(bytes: Uint8Array): Checked<PeerLinkWelcome> {
  const d = decode("peer link welcome", () => fromBinary(PeerLinkWelcomeSchema, bytes));
  if (!d.ok) return d;
  if (d.value.reason.length > MAX_TEXT || CONTROL_CHARS.test(d.value.reason)) return bad("peer link welcome with a bad reason");
  return d;
}

/** A DisconnectRequest from another node's admin API. */
export function readDisconnectRequest(bytes: Uint8Array): Checked<DisconnectRequest> {
  const d = decode("disconnect request", () => fromBinary(DisconnectRequestSchema, bytes));
  if (!d.ok) return d;
  const req = d.value;
  if (!isDnsLabel(req.tenant) || !CONNECTOR_ID.test(req.connectorId)) return bad("disconnect request with a bad tenant or connector id");
  if (req.reason.length > MAX_TEXT || CONTROL_CHARS.test(req.reason)) return bad("disconnect request with a bad reason");
  return ok(req);
}

/** A FeedInterest: the node that has traffic watchers. */
export function readFeedInterest(bytes: Uint8Array): Checked<string> {
  const d = decode("feed interest", () => fromBinary(FeedInterestSchema, bytes));
  if (!d.ok) return d;
  return NODE_ID_PATTERN.test(d.value.nodeId) ? ok(d.value.nodeId) : bad("feed interest with a bad node id");
}

/** Longest path a summary may carry: the gateway's own limit on a request head is below it. */
const MAX_SUMMARY_PATH = 16 * 1024;
const MAX_SUMMARY_FIELD = 256;
const SUMMARY_METHOD = /^[A-Za-z-]{1,32}$/;

/** An ExchangeSummary on ferry.feed.exchanges.<tenant>, for this node's watchers: every field checked, since watchers' screens and terminals show them. */
export function readExchangeSummary(subject: string, bytes: Uint8Array): Checked<ExchangeSummary> {
  if (bytes.length > 2 * MAX_SUMMARY_PATH) return bad("exchange summary too large");
  const d = decode("exchange summary", () => fromBinary(ExchangeSummarySchema, bytes));
  if (!d.ok) return d;
  const e = d.value;
  if (!isDnsLabel(e.tenant) || subject !== `ferry.feed.exchanges.${e.tenant}`) return bad("exchange summary for another tenant");
  if (!NODE_ID_PATTERN.test(e.nodeId)) return bad("exchange summary with a bad node id");
  if (e.status > 999 || (e.code !== "" && !ERROR_CODE.test(e.code)) || !SUMMARY_METHOD.test(e.method)) return bad("exchange summary out of range");
  if (e.path.length > MAX_SUMMARY_PATH || CONTROL_CHARS.test(e.path)) return bad("exchange summary with a bad path");
  for (const text of [e.target, e.clientAddress, e.principal, e.exchangeId, e.requestId, e.captureId]) {
    if (text.length > MAX_SUMMARY_FIELD || CONTROL_CHARS.test(text)) return bad("exchange summary with a bad field");
  }
  return ok(e);
}
