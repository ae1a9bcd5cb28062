import { type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import type { Duration } from "@bufbuild/protobuf/wkt";
import type { Frame, Header, RequestHead, ResponseHead } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import {
  type ConnectRequest,
  type ConnectResponse,
  ConnectorStatusSchema,
  GoAwaySchema,
  HelloSchema,
  PingSchema,
  PongSchema,
  TunnelService,
  WelcomeSchema,
} from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";

/** The HTTP/2 path of TunnelService/Connect, from the generated descriptor. */
export const TUNNEL_PATH = `/${TunnelService.typeName}/${TunnelService.method.connect.name}`;

/**
 * The tunnel's wire codec. Every byte of every exchange crosses it twice per
 * hop, so FrameBatch and everything inside a Frame is encoded and decoded by
 * hand (one exact-size buffer, body chunks decoded as views where that is
 * safe, no reflection).
 * The rare control messages (Hello, Welcome, Ping, Pong, GoAway) go through
 * protobuf-es. The bytes are exactly those of proto/ferry/tunnel/v1; tests
 * check both directions against protobuf-es.
 */

type Message = ConnectRequest | ConnectResponse;
type Oneof = Message["message"];

/** The control messages (everything but `frames`): their field number and schema, by oneof case. */
const CONTROL: Record<string, { field: number; schema: DescMessage }> = {
  hello: { field: 1, schema: HelloSchema },
  welcome: { field: 1, schema: WelcomeSchema },
  ping: { field: 3, schema: PingSchema },
  pong: { field: 4, schema: PongSchema },
  goAway: { field: 5, schema: GoAwaySchema },
  status: { field: 6, schema: ConnectorStatusSchema },
};
const FRAMES_FIELD = 2;

export class CodecError extends Error {}

/**
 * A Data chunk is decoded as a view into the message only when it is at least
 * this share of the buffer the view keeps alive; smaller chunks are copied out.
 * A view pins its whole message, and flow control counts only the chunk: a
 * peer could otherwise make a one-byte chunk hold an 8 MiB message. Normal bulk
 * batches (64 KiB chunks in messages of up to ~1 MiB, 1/16) stay zero-copy.
 * So do chunks in buffers of at most VIEW_ALWAYS_BYTES (a socket read holds up
 * to 64 KiB): copying every small response body costs an allocation and GC per
 * request, and what such views pin is bounded anyway, by the exchange's queue
 * (chunk-queue.ts compacts a queue whose chunks keep too much alive).
 */
const VIEW_MIN_SHARE = 1 / 20;
const VIEW_ALWAYS_BYTES = 128 * 1024;

// ---------------------------------------------------------------- encoding

/** gRPC's message header (uncompressed, then the length): 5 bytes at the start of `buf`. */
export const GRPC_PREFIX_BYTES = 5;
export function writeGrpcPrefix(buf: Buffer, messageLength: number): void {
  buf[0] = 0;
  buf.writeUInt32BE(messageLength, 1);
}

/**
 * Encodes a ConnectRequest or ConnectResponse. With `prefix` the buffer starts
 * with the 5-byte gRPC message header, so it goes on the wire as it is.
 */
export function encodeTunnelMessage(msg: Message, prefix = false): Buffer {
  const m = msg.message as Oneof;
  let field = 0;
  let inner: Uint8Array | undefined;
  let batchSize = 0;
  if (m.case === "frames") {
    field = FRAMES_FIELD;
    batchSize = batchLength(m.value.frames);
  } else if (m.case !== undefined) {
    const control = CONTROL[m.case]!;
    field = control.field;
    inner = toBinary(control.schema, m.value as never);
  }
  const innerLen = inner ? inner.length : batchSize;
  const body = field === 0 ? 0 : msgField(innerLen);
  const start = prefix ? GRPC_PREFIX_BYTES : 0;
  const buf = Buffer.allocUnsafe(start + body);
  if (prefix) writeGrpcPrefix(buf, body);
  if (field === 0) return buf;
  const w = new Writer(buf, start);
  w.tag(field, 2);
  w.varint(innerLen);
  if (inner) w.raw(inner);
  else for (const f of (m as { value: { frames: Frame[] } }).value.frames) w.frame(f);
  return buf;
}

/**
 * Data chunks at least this long are not copied by encodeFramesGathered: a writev sends them where they are, unless
 * a chunk is a view of less than VIEW_MIN_SHARE of its buffer. A socket's queue counts only a chunk's own bytes, so
 * such a view would keep the rest alive uncounted while the peer is slow to read (an 8 KiB view can pin an 8 MiB
 * message); bulk chunks (64 KiB in messages of up to ~1 MiB) stay uncopied.
 */
const GATHER_MIN_BYTES = 8 * 1024;

const gathers = (chunk: Uint8Array): boolean => chunk.length >= GATHER_MIN_BYTES && chunk.length >= chunk.buffer.byteLength * VIEW_MIN_SHARE;

/**
 * A ConnectResponse holding only `frames`, with the 5-byte gRPC message header,
 * as buffers to write in this order (a socket's writev gathers them): the data
 * chunks of GATHER_MIN_BYTES and more by reference, everything around them in
 * one buffer. A node passing bulk frames on saves a copy of every byte and the
 * allocation it takes. The chunks must not change until written (views into
 * received messages never do).
 */
export function encodeFramesGathered(frames: readonly Frame[]): Buffer[] {
  const batchSize = batchLength(frames);
  let gathered = 0;
  for (const f of frames) if (f.kind.case === "data" && gathers(f.kind.value.chunk)) gathered += f.kind.value.chunk.length;
  const body = msgField(batchSize);
  const buf = Buffer.allocUnsafe(GRPC_PREFIX_BYTES + body - gathered);
  writeGrpcPrefix(buf, body);
  const w = new GatherWriter(buf, GRPC_PREFIX_BYTES);
  w.tag(FRAMES_FIELD, 2);
  w.varint(batchSize);
  for (const f of frames) w.frame(f);
  return w.finish();
}

function batchLength(frames: readonly Frame[]): number {
  let n = 0;
  for (const f of frames) {
    const len = frameLength(f);
    n += msgField(len);
  }
  return n;
}

function frameLength(f: Frame): number {
  let n = bytesField(f.exchangeId.length);
  const k = f.kind;
  switch (k.case) {
    case "requestHead":
      return n + msgField(requestHeadLength(k.value));
    case "responseHead":
      return n + msgField(responseHeadLength(k.value));
    case "data":
      return n + msgField(k.value.chunk.length ? bytesField(k.value.chunk.length) : 0);
    case "end":
      return n + msgField(headersLength(k.value.trailers));
    case "reset":
      return n + msgField(resetLength(k.value.code, k.value.message));
    case "windowUpdate":
      return n + msgField(uintField(k.value.increment));
    default:
      return n;
  }
}

function requestHeadLength(h: RequestHead): number {
  return (
    strField(h.target) +
    strField(h.method) +
    strField(h.path) +
    strField(h.query) +
    headersLength(h.headers) +
    strField(h.clientAddress) +
    (h.timeout ? msgField(durationLength(h.timeout)) : 0) +
    (h.upgrade ? 2 : 0) +
    (h.endStream ? 2 : 0) +
    uintField(h.responseWindow) +
    strField(h.authority)
  );
}

function responseHeadLength(h: ResponseHead): number {
  return uintField(h.status) + headersLength(h.headers) + (h.endStream ? 2 : 0);
}

function headersLength(headers: readonly Header[]): number {
  let n = 0;
  for (const h of headers) n += msgField(strField(h.name) + strField(h.value));
  return n;
}

function resetLength(code: number, message: string): number {
  return (code ? 1 + int32Size(code) : 0) + strField(message);
}

function durationLength(d: Duration): number {
  return (d.seconds ? 1 + int64Size(d.seconds) : 0) + (d.nanos ? 1 + int32Size(d.nanos) : 0);
}

/** int32 and enum fields: a negative value is sign-extended to 64 bits (ten bytes), as protobuf says. */
function int32Size(v: number): number {
  return v < 0 ? 10 : varintSize(v);
}

function int64Size(v: bigint): number {
  if (v >= 0n && v <= MAX_SAFE) return varintSize(Number(v));
  let u = BigInt.asUintN(64, v);
  let n = 1;
  while (u >= 0x80n) {
    u >>= 7n;
    n++;
  }
  return n;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Size of a length-delimited field holding `len` bytes (0 when the field is left out as empty). */
export function bytesField(len: number): number {
  return len ? 1 + varintSize(len) + len : 0;
}

/** Size of a uint32 field (0 when left out at zero). */
export function uintField(v: number): number {
  return v ? 1 + varintSize(v) : 0;
}

/** A message field is written even when empty: its presence sets the oneof case. */
export function msgField(len: number): number {
  return 1 + varintSize(len) + len;
}

export function strField(s: string): number {
  return s.length ? bytesField(Buffer.byteLength(s, "utf8")) : 0;
}

export function varintSize(v: number): number {
  if (v < 0x80) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x200000) return 3;
  if (v < 0x10000000) return 4;
  let n = 5;
  for (v = Math.floor(v / 2 ** 35); v > 0; v = Math.floor(v / 128)) n++;
  return n;
}

/** Protobuf's wire format into a buffer sized beforehand (the *Field helpers); scalars at their default are left out, as protobuf-es does. */
export class Writer {
  constructor(
    protected readonly buf: Buffer,
    protected pos: number,
  ) {}

  tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  varint(v: number): void {
    while (v >= 0x80) {
      this.buf[this.pos++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    this.buf[this.pos++] = v;
  }

  raw(bytes: Uint8Array): void {
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  bytes(field: number, bytes: Uint8Array): void {
    if (!bytes.length) return;
    this.tag(field, 2);
    this.varint(bytes.length);
    this.raw(bytes);
  }

  str(field: number, s: string): void {
    if (!s.length) return;
    const len = Buffer.byteLength(s, "utf8");
    this.tag(field, 2);
    this.varint(len);
    this.pos += this.buf.write(s, this.pos, len, "utf8");
  }

  uint(field: number, v: number): void {
    if (!v) return;
    this.tag(field, 0);
    this.varint(v);
  }

  int32(field: number, v: number): void {
    if (!v) return;
    this.tag(field, 0);
    if (v > 0) this.varint(v);
    else this.varint64(BigInt.asUintN(64, BigInt(v)));
  }

  int64(field: number, v: bigint): void {
    if (!v) return;
    this.tag(field, 0);
    if (v > 0n && v <= MAX_SAFE) this.varint(Number(v));
    else this.varint64(BigInt.asUintN(64, v));
  }

  private varint64(v: bigint): void {
    while (v >= 0x80n) {
      this.buf[this.pos++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.pos++] = Number(v);
  }

  bool(field: number, v: boolean): void {
    if (!v) return;
    this.tag(field, 0);
    this.buf[this.pos++] = 1;
  }

  /** Opens a message field; the caller writes exactly `len` bytes into it. */
  message(field: number, len: number): void {
    this.tag(field, 2);
    this.varint(len);
  }

  headers(field: number, headers: readonly Header[]): void {
    for (const h of headers) {
      this.message(field, strField(h.name) + strField(h.value));
      this.str(1, h.name);
      this.str(2, h.value);
    }
  }

  frame(f: Frame): void {
    this.message(1, frameLength(f));
    this.bytes(1, f.exchangeId);
    const k = f.kind;
    switch (k.case) {
      case "requestHead": {
        const h = k.value;
        this.message(2, requestHeadLength(h));
        this.str(1, h.target);
        this.str(2, h.method);
        this.str(3, h.path);
        this.str(4, h.query);
        this.headers(5, h.headers);
        this.str(6, h.clientAddress);
        if (h.timeout) {
          this.message(7, durationLength(h.timeout));
          this.int64(1, h.timeout.seconds);
          this.int32(2, h.timeout.nanos);
        }
        this.bool(8, h.upgrade);
        this.bool(9, h.endStream);
        this.uint(10, h.responseWindow);
        this.str(11, h.authority);
        return;
      }
      case "responseHead": {
        const h = k.value;
        this.message(3, responseHeadLength(h));
        this.uint(1, h.status);
        this.headers(2, h.headers);
        this.bool(3, h.endStream);
        return;
      }
      case "data":
        this.message(4, k.value.chunk.length ? bytesField(k.value.chunk.length) : 0);
        this.bytes(1, k.value.chunk);
        return;
      case "end":
        this.message(5, headersLength(k.value.trailers));
        this.headers(1, k.value.trailers);
        return;
      case "reset":
        this.message(6, resetLength(k.value.code, k.value.message));
        this.int32(1, k.value.code);
        this.str(2, k.value.message);
        return;
      case "windowUpdate":
        this.message(7, uintField(k.value.increment));
        this.uint(1, k.value.increment);
        return;
      default:
        return;
    }
  }
}

/** A Writer that leaves big byte fields out of its buffer and lists them between the pieces of it (encodeFramesGathered). */
class GatherWriter extends Writer {
  private readonly parts: Buffer[] = [];
  private cut = 0;

  override raw(bytes: Uint8Array): void {
    if (!gathers(bytes)) return super.raw(bytes);
    if (this.pos > this.cut) this.parts.push(this.buf.subarray(this.cut, this.pos));
    this.parts.push(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    this.cut = this.pos;
  }

  finish(): Buffer[] {
    if (this.pos > this.cut) this.parts.push(this.buf.subarray(this.cut, this.pos));
    return this.parts;
  }
}

// ---------------------------------------------------------------- decoding

/** Decodes a ConnectRequest (connector to relay). Throws CodecError on malformed input. */
export function decodeConnectRequest(bytes: Uint8Array): ConnectRequest {
  return decode(bytes, "ferry.tunnel.v1.ConnectRequest", "hello") as ConnectRequest;
}

/** Decodes a ConnectResponse (relay to connector). Throws CodecError on malformed input. */
export function decodeConnectResponse(bytes: Uint8Array): ConnectResponse {
  return decode(bytes, "ferry.tunnel.v1.ConnectResponse", "welcome") as ConnectResponse;
}

/** `firstCase`: what field 1 is in this direction (Hello to the relay, Welcome from it). */
function decode(bytes: Uint8Array, typeName: string, firstCase: "hello" | "welcome"): Message {
  const byField: Record<number, string> = { 1: firstCase, 3: "ping", 4: "pong", 5: "goAway" };
  // Only the connector reports its status.
  if (firstCase === "hello") byField[6] = "status";
  const r = new Reader(bytes, 0, bytes.length);
  let message: Oneof = { case: undefined } as Oneof;
  while (r.more()) {
    const [field, wire] = r.tag();
    if (wire !== 2 || (field !== FRAMES_FIELD && byField[field] === undefined)) {
      r.skip(wire);
      continue;
    }
    const end = r.lengthEnd();
    if (field === FRAMES_FIELD) {
      message = { case: "frames", value: { $typeName: "ferry.tunnel.v1.FrameBatch", frames: r.frames(end) } } as Oneof;
    } else {
      const which = byField[field]!;
      message = { case: which, value: parse(CONTROL[which]!.schema, bytes.subarray(r.pos, end)) } as Oneof;
    }
    r.pos = end;
  }
  return { $typeName: typeName, message } as Message;
}

function parse<D extends DescMessage>(schema: D, bytes: Uint8Array): MessageShape<D> {
  try {
    return fromBinary(schema, bytes);
  } catch (e) {
    throw new CodecError(`malformed ${schema.typeName}: ${(e as Error).message}`);
  }
}

const EMPTY_BYTES = new Uint8Array(0);

/** `buf[start, end)` in a buffer of its own: not a slice of Node's shared pool, which would keep 8 KiB alive. */
function copyOf(buf: Uint8Array, start: number, end: number): Buffer {
  const out = Buffer.allocUnsafeSlow(end - start);
  out.set(buf.subarray(start, end));
  return out;
}

class Reader {
  /** Chunks shorter than this are copied out (see VIEW_MIN_SHARE, VIEW_ALWAYS_BYTES). */
  private readonly minView: number;

  constructor(
    private readonly buf: Uint8Array,
    public pos: number,
    private readonly limit: number,
  ) {
    this.minView = buf.buffer.byteLength <= VIEW_ALWAYS_BYTES ? 0 : buf.buffer.byteLength * VIEW_MIN_SHARE;
  }

  more(end = this.limit): boolean {
    return this.pos < end;
  }

  tag(): [number, number] {
    const t = this.varint();
    return [Math.floor(t / 8), t & 7];
  }

  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.limit) throw new CodecError("truncated varint");
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 128;
    }
    throw new CodecError("varint too long");
  }

  /** The low 32 bits of a varint of any length, unsigned (uint32 fields; `| 0` makes them int32). */
  varint32(): number {
    let v = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.limit) throw new CodecError("truncated varint");
      const b = this.buf[this.pos++]!;
      if (i < 5) v |= (b & 0x7f) << (7 * i);
      if (b < 0x80) return v >>> 0;
    }
    throw new CodecError("varint too long");
  }

  /** A varint as a signed 64-bit integer (int64 fields). */
  varint64(): bigint {
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.limit) throw new CodecError("truncated varint");
      const b = this.buf[this.pos++]!;
      if (i < 4) lo |= (b & 0x7f) << (7 * i);
      else if (i === 4) {
        lo |= (b & 0x0f) << 28;
        hi = (b & 0x7f) >> 4;
      } else hi |= (b & 0x7f) << (7 * i - 32);
      if (b < 0x80) return hi === 0 ? BigInt(lo >>> 0) : BigInt.asIntN(64, (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0));
    }
    throw new CodecError("varint too long");
  }

  /** Reads a length and returns where that many bytes end, checked against the enclosing field. */
  lengthEnd(limit = this.limit): number {
    const len = this.varint();
    const end = this.pos + len;
    if (end > limit) throw new CodecError("length past the end of its field");
    return end;
  }

  skip(wire: number): void {
    switch (wire) {
      case 0:
        this.varint();
        return;
      case 1:
        this.pos += 8;
        break;
      case 2:
        this.pos = this.lengthEnd();
        return;
      case 5:
        this.pos += 4;
        break;
      default:
        throw new CodecError(`unsupported wire type ${wire}`);
    }
    if (this.pos > this.limit) throw new CodecError("truncated field");
  }

  str(end: number): string {
    return Buffer.from(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength).toString("utf8", this.pos, end);
  }

  frames(end: number): Frame[] {
    const frames: Frame[] = [];
    while (this.more(end)) {
      const [field, wire] = this.tag();
      if (field === 1 && wire === 2) {
        const fend = this.lengthEnd(end);
        frames.push(this.frame(fend));
        this.pos = fend;
      } else this.skip(wire);
    }
    return frames;
  }

  private frame(end: number): Frame {
    let exchangeId: Uint8Array = new Uint8Array(0);
    let kind: Frame["kind"] = { case: undefined };
    while (this.more(end)) {
      const [field, wire] = this.tag();
      if (wire !== 2 || field < 1 || field > 7) {
        this.skip(wire);
        continue;
      }
      const fend = this.lengthEnd(end);
      switch (field) {
        case 1:
          exchangeId = this.buf.subarray(this.pos, fend);
          break;
        case 2:
          kind = { case: "requestHead", value: this.requestHead(fend) };
          break;
        case 3:
          kind = { case: "responseHead", value: this.responseHead(fend) };
          break;
        case 4:
          kind = { case: "data", value: { $typeName: "ferry.tunnel.v1.Data", chunk: this.singleBytes(fend) } };
          break;
        case 5:
          kind = { case: "end", value: { $typeName: "ferry.tunnel.v1.End", trailers: this.headerList(fend, 1) } };
          break;
        case 6:
          kind = { case: "reset", value: this.reset(fend) };
          break;
        case 7:
          kind = { case: "windowUpdate", value: { $typeName: "ferry.tunnel.v1.WindowUpdate", increment: this.singleUint(fend) } };
          break;
      }
      this.pos = fend;
    }
    return { $typeName: "ferry.tunnel.v1.Frame", exchangeId, kind };
  }

  private requestHead(end: number): RequestHead {
    const h: RequestHead = {
      $typeName: "ferry.tunnel.v1.RequestHead",
      target: "",
      method: "",
      path: "",
      query: "",
      headers: [],
      clientAddress: "",
      timeout: undefined,
      upgrade: false,
      endStream: false,
      responseWindow: 0,
      authority: "",
    };
    while (this.more(end)) {
      const [field, wire] = this.tag();
      if (wire === 0 && field >= 8 && field <= 10) {
        if (field === 10) h.responseWindow = this.varint32();
        else if (field === 8) h.upgrade = this.varint() !== 0;
        else h.endStream = this.varint() !== 0;
        continue;
      }
      if (wire !== 2 || field < 1 || (field > 7 && field !== 11)) {
        this.skip(wire);
        continue;
      }
      const fend = this.lengthEnd(end);
      switch (field) {
        case 11:
          h.authority = this.str(fend);
          break;
        case 1:
          h.target = this.str(fend);
          break;
        case 2:
          h.method = this.str(fend);
          break;
        case 3:
          h.path = this.str(fend);
          break;
        case 4:
          h.query = this.str(fend);
          break;
        case 5:
          h.headers.push(this.header(fend));
          break;
        case 6:
          h.clientAddress = this.str(fend);
          break;
        case 7:
          h.timeout = this.duration(fend);
          break;
      }
      this.pos = fend;
    }
    return h;
  }

  private responseHead(end: number): ResponseHead {
    const h: ResponseHead = { $typeName: "ferry.tunnel.v1.ResponseHead", status: 0, headers: [], endStream: false };
    while (this.more(end)) {
      const [field, wire] = this.tag();
      if (field === 1 && wire === 0) h.status = this.varint32();
      else if (field === 3 && wire === 0) h.endStream = this.varint() !== 0;
      else if (field === 2 && wire === 2) {
        const fend = this.lengthEnd(end);
        h.headers.push(this.header(fend));
        this.pos = fend;
      } else this.skip(wire);
    }
    return h;
  }

  private headerList(end: number, field: number): Header[] {
    const list: Header[] = [];
    while (this.more(end)) {
      const [f, wire] = this.tag();
      if (f === field && wire === 2) {
        const fend = this.lengthEnd(end);
        list.push(this.header(fend));
        this.pos = fend;
      } else this.skip(wire);
    }
    return list;
  }

  private header(end: number): Header {
    let name = "";
    let value = "";
    while (this.more(end)) {
      const [field, wire] = this.tag();
      if (wire === 2 && (field === 1 || field === 2)) {
        const fend = this.lengthEnd(end);
        if (field === 1) name = this.str(fend);
        else value = this.str(fend);
        this.pos = fend;
      } else this.skip(wire);
    }
    return { $typeName: "ferry.tunnel.v1.Header", name, value };
  }

  private reset(end: number) {
    let code = 0;
    let message = "";
    while (this.more(end)) {
      const [field, wire] = this.tag();
      if (field === 1 && wire === 0) code = this.varint32() | 0;
      else if (field === 2 && wire === 2) {
        const fend = this.lengthEnd(end);
        message = this.str(fend);
        this.pos = fend;
      } else this.skip(wire);
    }
    return { $typeName: "ferry.tunnel.v1.Reset" as const, code, message };
  }

  private duration(end: number): Duration {
    let seconds = 0n;
    let nanos = 0;
    while (this.more(end)) {
      const [field, wire] = this.tag();
      if (field === 1 && wire === 0) seconds = this.varint64();
      else if (field === 2 && wire === 0) nanos = this.varint32() | 0;
      else this.skip(wire);
    }
    return { $typeName: "google.protobuf.Duration", seconds, nanos };
  }

  /** The one bytes field (1) of a message such as Data: a view into the buffer, or a copy when small (see VIEW_MIN_SHARE). */
  private singleBytes(end: number): Uint8Array {
    let out: Uint8Array = EMPTY_BYTES;
    while (this.more(end)) {
      const [field, wire] = this.tag();
      if (field === 1 && wire === 2) {
        const fend = this.lengthEnd(end);
        out = fend - this.pos >= this.minView ? this.buf.subarray(this.pos, fend) : copyOf(this.buf, this.pos, fend);
        this.pos = fend;
      } else this.skip(wire);
    }
    return out;
  }

  private singleUint(end: number): number {
    let v = 0;
    while (this.more(end)) {
      const [field, wire] = this.tag();
      if (field === 1 && wire === 0) v = this.varint32();
      else this.skip(wire);
    }
    return v;
  }
}
