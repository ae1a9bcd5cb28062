import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream } from "node:http2";
import { type Frame, type Header, type ResponseHead } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { type ConnectRequest, type ConnectResponse, HelloSchema, type Welcome } from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";
import { decodeConnectResponse, encodeTunnelMessage, TUNNEL_PATH } from "../../core/exchange/tunnel-codec.js";
import { exchangeKey } from "../../core/exchange/ids.js";

/** How the tunnel stream ended, from the relay's gRPC trailers (or the stream's close). */
export interface TunnelEnd {
  grpcStatus: number | undefined;
  grpcMessage: string | undefined;
}

/**
 * A connector written from the protocol, not from our connector: it dials the
 * relay's real tunnel endpoint over HTTP/2 and says exactly what the test tells
 * it to, valid or not (any Hello, any frame, raw bytes). Incoming messages are
 * always read (a tunnel whose responses are not read would back up), decoded,
 * and kept for the test to wait on. For security tests: what a compromised or
 * hostile connector can make the relay do.
 */
export class HostileConnector {
  readonly received: ConnectResponse[] = [];
  welcome: Welcome | undefined;
  /** Resolves when the stream ends, however it ends. */
  readonly ended: Promise<TunnelEnd>;
  private waiters: Array<() => void> = [];
  private pending: Buffer = Buffer.alloc(0);
  private trailers: Record<string, unknown> = {};

  private constructor(
    readonly session: ClientHttp2Session,
    readonly stream: ClientHttp2Stream,
  ) {
    stream.on("data", (chunk: Buffer) => this.onData(chunk));
    stream.on("trailers", (t) => (this.trailers = t));
    // A trailers-only answer (how the relay refuses) carries the status in the response headers.
    stream.on("response", (h) => {
      if (h["grpc-status"] !== undefined) this.trailers = h;
    });
    // The relay is done with the stream: close our half too, so 'close' comes.
    stream.on("end", () => stream.close());
    stream.on("error", () => {});
    session.on("error", () => {});
    this.ended = new Promise((resolve) => {
      stream.once("close", () => {
        const status = this.trailers["grpc-status"];
        resolve({
          grpcStatus: status === undefined ? undefined : Number(status),
          grpcMessage: this.trailers["grpc-message"] === undefined ? undefined : decodeURIComponent(String(this.trailers["grpc-message"])),
        });
        this.wake();
      });
    });
    this.ended.then(() => session.close()).catch(() => {});
  }

  /**
   * Opens the tunnel stream with `key` (a connector key, or any string). Sends
   * nothing: call hello() or send() next. `headers` may replace the usual ones.
   */
  static async open(relayUrl: string, key: string, headers: Record<string, string> = {}, ca?: Buffer): Promise<HostileConnector> {
    const session = connect(relayUrl, ca ? { ca } : {});
    session.on("error", () => {});
    await new Promise<void>((resolve, reject) => {
      session.once("connect", () => resolve());
      session.once("error", reject);
    });
    const stream = session.request({
      ":method": "POST",
      ":path": TUNNEL_PATH,
      "content-type": "application/grpc",
      te: "trailers",
      ...(key ? { authorization: `Bearer ${key}` } : {}),
      ...headers,
    });
    return new HostileConnector(session, stream);
  }

  /** Opens and sends a Hello (valid by default: one target "app"), then waits for Welcome (or the end). */
  static async connect(relayUrl: string, key: string, hello: MessageInitShape<typeof HelloSchema> = {}): Promise<HostileConnector> {
    const c = await HostileConnector.open(relayUrl, key);
    c.hello(hello);
    await c.waitWelcome();
    return c;
  }

  hello(init: MessageInitShape<typeof HelloSchema> = {}): void {
    const value = create(HelloSchema, {
      protocolVersion: 1,
      connectorId: "hostile",
      connectorVersion: "0.0.0-test",
      targets: [{ name: "app" }],
      maxConcurrentExchanges: 256,
      requestWindow: 512 * 1024,
      ...init,
    });
    this.send({ case: "hello", value });
  }

  /** Resolves with Welcome, or undefined when the relay ended the stream instead. */
  async waitWelcome(): Promise<Welcome | undefined> {
    await this.until(() => this.welcome !== undefined);
    return this.welcome;
  }

  /** Sends one message (encoded with the real codec). */
  send(message: ConnectRequest["message"]): void {
    this.sendRaw(encodeTunnelMessage({ $typeName: "ferry.tunnel.v1.ConnectRequest", message } as ConnectRequest));
  }

  sendFrames(frames: Frame[]): void {
    this.send({ case: "frames", value: { $typeName: "ferry.tunnel.v1.FrameBatch", frames } });
  }

  /** Sends `body` as one gRPC message (5-byte prefix added here); any bytes at all. */
  sendRaw(body: Uint8Array): void {
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(body.length, 1);
    if (!this.stream.destroyed) this.stream.write(Buffer.concat([prefix, body]));
  }

  /** Writes bytes as they are, without a gRPC prefix (to break the framing itself). */
  writeBytes(bytes: Uint8Array): void {
    if (!this.stream.destroyed) this.stream.write(bytes);
  }

  /** Every frame received so far, in order. */
  frames(): Frame[] {
    return this.received.flatMap((m) => (m.message.case === "frames" ? m.message.value.frames : []));
  }

  /** Resolves with the first frame (past or future) matching `match`; undefined if the stream ends first. */
  async nextFrame(match: (f: Frame) => boolean, after = 0): Promise<Frame | undefined> {
    let found: Frame | undefined;
    await this.until(() => (found = this.frames().slice(after).find(match)) !== undefined);
    return found;
  }

  /** The next exchange the relay opens here: its id and RequestHead. */
  async nextRequest(after = 0): Promise<{ id: Uint8Array; key: string; frame: Frame } | undefined> {
    const frame = await this.nextFrame((f) => f.kind.case === "requestHead", after);
    return frame ? { id: frame.exchangeId, key: exchangeKey(frame.exchangeId), frame } : undefined;
  }

  /** Frames of one exchange received so far. */
  framesOf(id: Uint8Array): Frame[] {
    const key = exchangeKey(id);
    return this.frames().filter((f) => exchangeKey(f.exchangeId) === key);
  }

  /** A response head frame (any status and headers, valid or not). */
  static responseHead(id: Uint8Array, status: number, headers: Array<[string, string]>, endStream = false): Frame {
    const value: ResponseHead = { $typeName: "ferry.tunnel.v1.ResponseHead", status, headers: headers.map(hdr), endStream };
    return { $typeName: "ferry.tunnel.v1.Frame", exchangeId: id, kind: { case: "responseHead", value } };
  }

  static data(id: Uint8Array, chunk: Uint8Array): Frame {
    return { $typeName: "ferry.tunnel.v1.Frame", exchangeId: id, kind: { case: "data", value: { $typeName: "ferry.tunnel.v1.Data", chunk } } };
  }

  static end(id: Uint8Array, trailers: Array<[string, string]> = []): Frame {
    return { $typeName: "ferry.tunnel.v1.Frame", exchangeId: id, kind: { case: "end", value: { $typeName: "ferry.tunnel.v1.End", trailers: trailers.map(hdr) } } };
  }

  /** Answers an exchange in one message: head, optional body, end with optional trailers. */
  respond(id: Uint8Array, status: number, headers: Array<[string, string]>, body?: Uint8Array | string, trailers: Array<[string, string]> = []): void {
    const frames = [HostileConnector.responseHead(id, status, headers)];
    if (body !== undefined) frames.push(HostileConnector.data(id, typeof body === "string" ? Buffer.from(body) : body));
    frames.push(HostileConnector.end(id, trailers));
    this.sendFrames(frames);
  }

  /** Ends our side of the stream. */
  end(): void {
    this.stream.end();
  }

  /** Drops the connection without a word. */
  destroy(): void {
    this.stream.close(constants.NGHTTP2_CANCEL);
    this.session.destroy();
  }

  get isClosed(): boolean {
    return this.stream.closed || this.stream.destroyed;
  }

  private onData(chunk: Buffer): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    while (this.pending.length >= 5) {
      const len = this.pending.readUInt32BE(1);
      if (this.pending.length < 5 + len) break;
      const body = this.pending.subarray(5, 5 + len);
      this.pending = this.pending.subarray(5 + len);
      let message: ConnectResponse;
      try {
        message = decodeConnectResponse(Buffer.from(body));
      } catch {
        continue;
      }
      if (message.message.case === "welcome") this.welcome = message.message.value;
      this.received.push(message);
    }
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Waits until `check` holds or the stream has ended. */
  private async until(check: () => boolean): Promise<void> {
    let ended = false;
    void this.ended.then(() => (ended = true));
    while (!check() && !ended && !this.isClosed) await new Promise<void>((r) => this.waiters.push(r));
  }
}

function hdr([name, value]: [string, string]): Header {
  return { $typeName: "ferry.tunnel.v1.Header", name, value };
}
