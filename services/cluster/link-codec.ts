import { create, toBinary } from "@bufbuild/protobuf";
import {
  type Accepted,
  type OpenExchange,
  type OpenResult,
  PeerLinkHelloSchema,
  PeerLinkKind,
  type PeerLinkVerdict,
  PeerLinkWelcomeSchema,
  type Refused,
} from "../../gen/ferry/cluster/v1/cluster_pb.js";
import type { FramesKind } from "./subjects.js";
import { bytesField, GRPC_PREFIX_BYTES, msgField, strField, uintField, varintSize, writeGrpcPrefix, Writer } from "../../core/exchange/tunnel-codec.js";

/**
 * The two peer link messages that are not batches, FramesRequest.open and .open_result, written by hand as
 * the tunnel's codec writes frames: protobuf-es' create and toBinary cost each cross-node request ~10 µs and
 * a dozen objects on both nodes. Byte for byte what toBinary writes (fields in order, defaults left out);
 * reading stays with protobuf-es (readLinkMessage), which checks what a peer sent.
 */

/** FramesRequest's fields for them; numbers of 16 and up take two bytes of tag. */
const OPEN_FIELD = 20;
const OPEN_RESULT_FIELD = 21;
const longMsgField = (len: number): number => 2 + varintSize(len) + len;

const openLength = (o: OpenExchange): number =>
  bytesField(o.exchangeId.length) + strField(o.tenant) + strField(o.target) + strField(o.ingressNode);

const acceptedLength = (a: Accepted): number =>
  strField(a.egressNode) + uintField(a.requestWindow) + uintField(a.maxFrameSize) + (a.openedOverLink ? 2 : 0);

const refusedLength = (r: Refused): number =>
  strField(r.kind) + strField(r.code) + strField(r.message) + uintField(r.retryAfterSeconds);

const resultLength = (result: OpenResult["result"]): number =>
  result.case === "accepted" ? msgField(acceptedLength(result.value)) : result.case === "refused" ? msgField(refusedLength(result.value)) : 0;

/** A gRPC message (its 5-byte header first) of `len` bytes, filled by `write`. */
function framed(len: number, write: (w: Writer) => void): Buffer {
  const buf = Buffer.allocUnsafe(GRPC_PREFIX_BYTES + len);
  writeGrpcPrefix(buf, len);
  write(new Writer(buf, GRPC_PREFIX_BYTES));
  return buf;
}

/** FramesRequest{open}, ready for the link's "req" stream. */
export function encodeLinkOpen(open: OpenExchange): Buffer {
  const len = openLength(open);
  return framed(longMsgField(len), (w) => {
    w.message(OPEN_FIELD, len);
    w.bytes(1, open.exchangeId);
    w.str(2, open.tenant);
    w.str(3, open.target);
    w.str(4, open.ingressNode);
  });
}

/** FramesRequest{open_result}, ready for the link's "res" stream. */
export function encodeLinkOpenResult(exchangeId: Uint8Array, result: OpenResult["result"]): Buffer {
  const resLen = resultLength(result);
  const len = bytesField(exchangeId.length) + msgField(resLen);
  return framed(longMsgField(len), (w) => {
    w.message(OPEN_RESULT_FIELD, len);
    w.bytes(1, exchangeId);
    w.message(2, resLen);
    if (result.case === "accepted") {
      const a = result.value;
      w.message(1, acceptedLength(a));
      w.str(1, a.egressNode);
      w.uint(2, a.requestWindow);
      w.uint(3, a.maxFrameSize);
      w.bool(4, a.openedOverLink);
    } else if (result.case === "refused") {
      const r = result.value;
      w.message(2, refusedLength(r));
      w.str(1, r.kind);
      w.str(2, r.code);
      w.str(3, r.message);
      w.uint(4, r.retryAfterSeconds);
    }
  });
}

/** A message off the hot path (a link's hello and welcome: once per connection), encoded by protobuf-es. */
const framedBinary = (bytes: Uint8Array): Buffer => framed(bytes.length, (w) => w.raw(bytes));

/** PeerLinkHello, the first message of a link we open. */
export function encodeLinkHello(nodeId: string, token: string, kind: FramesKind): Buffer {
  const k = kind === "req" ? PeerLinkKind.REQUESTS : PeerLinkKind.RESPONSES;
  return framedBinary(toBinary(PeerLinkHelloSchema, create(PeerLinkHelloSchema, { nodeId, token, kind: k })));
}

/** PeerLinkWelcome, the one message we send on a link another node opened. */
export function encodeLinkWelcome(verdict: PeerLinkVerdict, reason: string): Buffer {
  return framedBinary(toBinary(PeerLinkWelcomeSchema, create(PeerLinkWelcomeSchema, { verdict, reason })));
}
