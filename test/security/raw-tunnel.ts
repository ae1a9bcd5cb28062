import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { hostPort } from "../../core/host-port.js";
import { connect as h2connect } from "node:http2";
import { connect as tcpConnect, isIP } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { ConnectRequestSchema, type HelloSchema } from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";
import { encodeTunnelMessage, TUNNEL_PATH } from "../../core/exchange/tunnel-codec.js";

/** How the relay answered a tunnel's Hello. */
export interface TunnelAnswer {
  /** "welcome", or the gRPC status it ended the stream with. */
  status: number | "welcome";
  message: string;
  /** SETTINGS frames the relay had sent on the session by then (its first one included). */
  settingsFrames: number;
}

export interface RawTunnelOptions {
  /** Source address (any 127.0.0.0/8 address works on loopback). */
  localAddress?: string;
  hello?: MessageInitShape<typeof HelloSchema>;
  /** For an https:// relay: the CA to trust, and a client certificate (PEM) to present. */
  tls?: { ca: Buffer; cert?: Buffer; key?: Buffer };
}

export interface RawTunnel {
  /** Welcome, or the refusal. */
  answer: Promise<TunnelAnswer>;
  /** How the stream ended (status and message from the relay's trailers), however it ends. */
  ended: Promise<{ status: number | undefined; message: string }>;
  close(): void;
}

/**
 * A tunnel on a session of its own, made from raw sockets so the test picks
 * the source address and client certificate, and sees every SETTINGS frame of
 * the relay from the first: sends a Hello (one target "app" unless `hello`
 * says otherwise) with `secret` and reads whatever comes back.
 */
export function openRawTunnel(url: string, secret: string, opts: RawTunnelOptions = {}): RawTunnel {
  const { host, port } = hostPort(new URL(url));
  const socket = () => {
    const tcp = tcpConnect({ host, port, localAddress: opts.localAddress });
    return opts.tls ? tlsConnect({ socket: tcp, ALPNProtocols: ["h2"], ...(isIP(host) ? {} : { servername: host }), ...opts.tls }) : tcp;
  };
  const session = h2connect(url, { createConnection: socket });
  let settingsFrames = 0;
  session.on("remoteSettings", () => settingsFrames++);
  session.on("error", () => {});
  const stream = session.request({
    ":method": "POST",
    ":path": TUNNEL_PATH,
    "content-type": "application/grpc",
    te: "trailers",
    ...(secret ? { authorization: `Bearer ${secret}` } : {}),
  });
  stream.on("error", () => {});
  const value = { protocolVersion: 1, connectorId: "raw", targets: [{ name: "app" }], ...opts.hello };
  stream.write(encodeTunnelMessage(create(ConnectRequestSchema, { message: { case: "hello", value } }), true));
  let status: number | undefined;
  let message = "";
  const answer = new Promise<TunnelAnswer>((resolve) => {
    const onStatus = (h: Record<string, unknown>) => {
      if (h["grpc-status"] === undefined) return;
      status = Number(h["grpc-status"]);
      message = decodeURIComponent(String(h["grpc-message"] ?? ""));
      resolve({ status, message, settingsFrames });
    };
    stream.on("response", onStatus);
    stream.on("trailers", onStatus);
    stream.on("data", () => resolve({ status: "welcome", message: "", settingsFrames }));
    stream.on("close", () => resolve({ status: -1, message: "stream closed without a status", settingsFrames }));
  });
  stream.on("end", () => stream.close());
  const ended = new Promise<{ status: number | undefined; message: string }>((resolve) => stream.on("close", () => resolve({ status, message })));
  return { answer, ended, close: () => session.destroy() };
}

/** One tunnel attempt: its answer, then the session is gone. */
export async function tunnelAttempt(url: string, secret: string, opts: RawTunnelOptions = {}): Promise<TunnelAnswer> {
  const t = openRawTunnel(url, secret, opts);
  try {
    return await t.answer;
  } finally {
    t.close();
  }
}
