import { create } from "@bufbuild/protobuf";
import { createServer, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import type { AddressInfo } from "node:net";
import type { Frame, RequestHead } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { type ConnectRequest, type ConnectResponse, WelcomeSchema } from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { decodeConnectRequest, encodeTunnelMessage, TUNNEL_PATH } from "../../core/exchange/tunnel-codec.js";
import { exchangeKey } from "../../core/exchange/ids.js";

/** One tunnel stream a connector opened to the hostile relay. */
/** A request head as a relay sends it, for target `target` unless `init` says otherwise. */
export function requestHead(target: string, init: Partial<RequestHead> = {}): RequestHead {
  return {
    $typeName: "ferry.tunnel.v1.RequestHead",
    target,
    method: "GET",
    path: "/json",
    query: "",
    headers: [],
    clientAddress: "198.51.100.7",
    upgrade: false,
    endStream: true,
    responseWindow: 512 * 1024,
    authority: "",
    ...init,
  };
}

export function frame(id: Uint8Array, kind: Frame["kind"]): Frame {
  return { $typeName: "ferry.tunnel.v1.Frame", exchangeId: id, kind };
}

export interface HostileTunnel {
  stream: ServerHttp2Stream;
  /** Every message the connector sent, decoded (Hello first). */
  received: ConnectRequest[];
  send(message: ConnectResponse["message"]): void;
  sendFrames(frames: Frame[]): void;
  /** Frames the connector sent so far. */
  frames(): Frame[];
  /** Resolves with the first frame of exchange `id` (past or future) that matches. */
  frameOf(id: Uint8Array, match: (f: Frame) => boolean): Promise<Frame>;
}

/**
 * A relay written from the protocol: an h2c server on 127.0.0.1 that answers
 * each connector's Hello with Welcome (any fields the test chooses) and then
 * sends exactly the frames the test tells it to. For security tests: what a
 * compromised relay can make a connector do.
 */
export class HostileRelay {
  readonly tunnels: HostileTunnel[] = [];
  /**
   * Other paths its port answers, as a real relay's port does (e.g. /.well-known/ferry/jwks.json), by path
   * without the query; the rest get 404.
   */
  readonly routes = new Map<string, (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void>();
  private waiters: Array<() => void> = [];

  private constructor(
    private readonly server: Http2Server,
    readonly url: string,
    private readonly welcome: MessageInitShape<typeof WelcomeSchema>,
  ) {
    server.on("stream", (stream, headers) => {
      if (headers[":path"] !== TUNNEL_PATH) {
        stream.on("error", () => {});
        const route = this.routes.get(String(headers[":path"] ?? "").split("?", 1)[0]!);
        if (route) return route(stream, headers);
        stream.respond({ ":status": 404 }, { endStream: true });
        return;
      }
      stream.respond({ ":status": 200, "content-type": "application/grpc" });
      stream.on("error", () => {});
      this.tunnels.push(this.tunnel(stream));
      this.wake();
    });
  }

  static async start(welcome: MessageInitShape<typeof WelcomeSchema> = {}): Promise<HostileRelay> {
    const server = createServer();
    server.on("sessionError", () => {});
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    return new HostileRelay(server, `http://127.0.0.1:${port}`, welcome);
  }

  /** Resolves once `n` tunnels have sent their Hello. */
  async tunnelsUp(n: number): Promise<HostileTunnel[]> {
    while (this.tunnels.filter((t) => t.received.length > 0).length < n) await new Promise<void>((r) => this.waiters.push(r));
    return this.tunnels.filter((t) => t.received.length > 0);
  }

  async close(): Promise<void> {
    for (const t of this.tunnels) t.stream.close();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private tunnel(stream: ServerHttp2Stream): HostileTunnel {
    const received: ConnectRequest[] = [];
    let pending = Buffer.alloc(0);
    const t: HostileTunnel = {
      stream,
      received,
      send: (message) => {
        if (!stream.destroyed) stream.write(encodeTunnelMessage({ $typeName: "ferry.tunnel.v1.ConnectResponse", message } as ConnectResponse, true));
      },
      sendFrames: (frames) => t.send({ case: "frames", value: { $typeName: "ferry.tunnel.v1.FrameBatch", frames } }),
      frames: () => received.flatMap((m) => (m.message.case === "frames" ? m.message.value.frames : [])),
      frameOf: async (id, match) => {
        const key = exchangeKey(id);
        for (;;) {
          const found = t.frames().find((f) => exchangeKey(f.exchangeId) === key && match(f));
          if (found) return found;
          if (stream.closed) throw new Error("the tunnel closed first");
          await new Promise<void>((r) => this.waiters.push(r));
        }
      },
    };
    stream.on("data", (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
        const len = pending.readUInt32BE(1);
        const message = decodeConnectRequest(pending.subarray(5, 5 + len));
        pending = pending.subarray(5 + len);
        received.push(message);
        if (message.message.case === "hello") {
          t.send({ case: "welcome", value: create(WelcomeSchema, { protocolVersion: 1, tunnelId: "t", nodeId: "hostile", tenant: "acme", maxFrameSize: 65536, ...this.welcome }) });
        }
      }
      this.wake();
    });
    stream.on("close", () => this.wake());
    return t;
  }
}
