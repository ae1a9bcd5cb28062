import { connect as netConnect, type Socket } from "node:net";
import { hostPort } from "../../core/host-port.js";
import { Duplex } from "node:stream";
import { connect as tlsConnect } from "node:tls";

/**
 * Hostile clients made of bytes: a TCP socket that sends exactly what the test
 * writes (a partial head, a partial preface, a trickled TLS ClientHello, raw
 * HTTP/2 frames), and what the relay did with it.
 */
export interface RawPeer {
  socket: Socket;
  /** Everything the relay sent so far. */
  received(): Buffer;
  /** Resolves when the relay has closed the connection: how long after connecting, and what it had sent. */
  readonly closed: Promise<{ ms: number; bytes: Buffer }>;
}

/** Opens a TCP connection to the relay's port (from `localAddress` when given); resolves once connected. */
export async function rawPeer(url: string, localAddress?: string): Promise<RawPeer> {
  const socket = netConnect({ ...hostPort(new URL(url)), localAddress });
  const chunks: Buffer[] = [];
  socket.on("data", (c: Buffer) => chunks.push(c));
  socket.on("error", () => {});
  const started = Date.now();
  const closed = new Promise<{ ms: number; bytes: Buffer }>((resolve) =>
    socket.once("close", () => resolve({ ms: Date.now() - started, bytes: Buffer.concat(chunks) })),
  );
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  return { socket, received: () => Buffer.concat(chunks), closed };
}

/**
 * Fails the test instead of hanging when the relay keeps a connection it
 * should have dropped: a bound on how long a wait may take, not a sleep.
 */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`still open after ${ms}ms: ${what}`)), ms)));
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** The first flight of a real TLS client (its ClientHello), captured without any network. */
export async function clientHello(servername = "localhost"): Promise<Buffer> {
  let resolveHello: (b: Buffer) => void = () => {};
  const hello = new Promise<Buffer>((resolve) => (resolveHello = resolve));
  const wire = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      resolveHello(chunk);
      callback();
    },
  });
  const tls = tlsConnect({ socket: wire, servername, rejectUnauthorized: false });
  tls.on("error", () => {});
  const bytes = await hello;
  tls.destroy();
  return bytes;
}

/** Writes `bytes` one at a time, `everyMs` apart, until done or the socket closes. */
export function trickle(socket: Socket, bytes: Buffer, everyMs: number): void {
  let i = 0;
  const timer = setInterval(() => {
    if (socket.destroyed || i >= bytes.length) return clearInterval(timer);
    socket.write(bytes.subarray(i, ++i));
  }, everyMs);
  socket.once("close", () => clearInterval(timer));
}

export const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
export const H2 = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, GOAWAY: 7 } as const;
export const H2_FLAGS = { END_STREAM: 1, ACK: 1, END_HEADERS: 4 } as const;

/** One HTTP/2 frame (RFC 9113 §4.1). */
export function h2Frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId, 5);
  return Buffer.concat([head, payload]);
}

/** A request header block in HPACK without a table: GET (2), http (6), `path` and `authority` as literals. */
export function h2RequestBlock(path: string, authority = "localhost"): Buffer {
  const literal = (index: number, value: string) => {
    const v = Buffer.from(value, "latin1");
    if (v.length > 126) throw new Error("test header too long for a one-byte length");
    // Literal without indexing, indexed name (RFC 7541 §6.2.2), 4-bit name index.
    return Buffer.concat([Buffer.from([index, v.length]), v]);
  };
  return Buffer.concat([Buffer.from([0x82, 0x86]), literal(0x04, path), literal(0x01, authority)]);
}

export interface H2FrameSeen {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

/** The frames in what a server sent after the connection preface (incomplete trailing bytes ignored). */
export function h2Frames(bytes: Buffer): H2FrameSeen[] {
  const frames: H2FrameSeen[] = [];
  let at = 0;
  while (at + 9 <= bytes.length) {
    const length = bytes.readUIntBE(at, 3);
    if (at + 9 + length > bytes.length) break;
    frames.push({ type: bytes[at + 3]!, flags: bytes[at + 4]!, streamId: bytes.readUInt32BE(at + 5) & 0x7fffffff, payload: bytes.subarray(at + 9, at + 9 + length) });
    at += 9 + length;
  }
  return frames;
}

/** The value of one setting in a SETTINGS frame's payload, if present. */
export function h2Setting(payload: Buffer, id: number): number | undefined {
  for (let at = 0; at + 6 <= payload.length; at += 6) if (payload.readUInt16BE(at) === id) return payload.readUInt32BE(at + 2);
  return undefined;
}
