import { hostname } from "node:os";
import { type ClientHttp2Session, type ClientHttp2Stream, connect as http2Connect } from "node:http2";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { create } from "@bufbuild/protobuf";
import { type ConnectResponse, ConnectRequestSchema } from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";
import { shortId } from "../../core/exchange/ids.js";
import { DEFAULT_WINDOW, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION } from "../../core/exchange/protocol.js";
import { decodeConnectResponse, encodeTunnelMessage, TUNNEL_PATH } from "../../core/exchange/tunnel-codec.js";
import { FERRY_VERSION } from "../../core/version.js";
import { StepFailure } from "./report.js";

/**
 * Opens HTTP/2 over an established connection: ALPN h2 over TLS, the
 * connection preface in the clear. A TLS-inspecting proxy that speaks only
 * HTTP/1.1 shows up here, and tunnels cannot work through it.
 */
export async function openHttp2(socket: Socket, origin: string, timeoutMs: number): Promise<ClientHttp2Session> {
  const alpn = (socket as TLSSocket).alpnProtocol;
  if (alpn !== undefined && alpn !== "h2") {
    socket.destroy();
    throw new StepFailure(
      `the connection negotiated ${alpn || "no protocol"} instead of HTTP/2`,
      "a TLS-inspecting proxy is probably in the way: exempt the relay's host from inspection (tunnels need HTTP/2)",
    );
  }
  const session = http2Connect(origin, { createConnection: () => socket });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      session.destroy();
      reject(new StepFailure("no HTTP/2 settings from the server", "something between here and the relay does not pass HTTP/2 (a proxy?)"));
    }, timeoutMs);
    session.once("remoteSettings", () => {
      clearTimeout(timer);
      resolve();
    });
    session.once("error", (err) => {
      clearTimeout(timer);
      reject(new StepFailure(`HTTP/2 failed: ${err.message}`, "something between here and the relay does not pass HTTP/2 (a proxy?)"));
    });
  });
  return session;
}

/** GET /healthz: the relay's version, and whether it speaks this connector's protocol. */
export async function relayVersion(session: ClientHttp2Session, timeoutMs: number): Promise<string> {
  const { status, body } = await get(session, "/healthz", timeoutMs);
  let health: { version?: string; protocols?: [number, number] } = {};
  try {
    health = JSON.parse(body) as typeof health;
  } catch {
    // not Ferry: handled below
  }
  if (status !== 200 || !health.version) {
    throw new StepFailure(`GET /healthz answered ${status} without a Ferry version`, "check that the URL is the relay's (and not a load balancer's error page)");
  }
  const [min, max] = health.protocols ?? [1, 1];
  if (PROTOCOL_VERSION < min || MIN_PROTOCOL_VERSION > max) {
    throw new StepFailure(
      `relay ${health.version} speaks protocol ${min}-${max}, this connector ${MIN_PROTOCOL_VERSION}-${PROTOCOL_VERSION}`,
      "upgrade the older of the two",
    );
  }
  return health.version;
}

export interface TunnelProbe {
  tenant: string;
  nodeId: string;
  /** Sends a Ping and resolves with the round-trip time in ms. */
  ping(): Promise<number>;
  close(): void;
}

/**
 * Authenticates a probe tunnel with the key: the relay answers Welcome (and
 * Pings) but routes no exchanges to it, so the check takes no traffic.
 */
export async function probeTunnel(session: ClientHttp2Session, key: string, timeoutMs: number): Promise<TunnelProbe> {
  const stream = session.request({
    ":method": "POST",
    ":path": TUNNEL_PATH,
    "content-type": "application/grpc",
    te: "trailers",
    authorization: `Bearer ${key}`,
  });
  const messages = grpcMessages(stream);
  stream.write(
    encodeTunnelMessage(
      create(ConnectRequestSchema, {
        message: {
          case: "hello",
          value: {
            protocolVersion: PROTOCOL_VERSION,
            connectorId: `doctor-${shortId(8)}`,
            connectorVersion: FERRY_VERSION,
            requestWindow: DEFAULT_WINDOW,
            hostname: hostname(),
            probe: true,
          },
        },
      }),
      true,
    ),
  );
  const first = await messages.next(timeoutMs).catch((err: unknown) => {
    stream.close();
    throw err;
  });
  if (first.message.case !== "welcome") throw new StepFailure("the relay did not answer Hello with Welcome", "check the relay's logs");
  const welcome = first.message.value;
  let nonce = 0n;
  return {
    tenant: welcome.tenant,
    nodeId: welcome.nodeId,
    async ping() {
      nonce++;
      const started = performance.now();
      stream.write(encodeTunnelMessage(create(ConnectRequestSchema, { message: { case: "ping", value: { nonce } } }), true));
      for (;;) {
        const m = await messages.next(timeoutMs);
        if (m.message.case === "pong" && m.message.value.nonce === nonce) return performance.now() - started;
      }
    },
    close: () => stream.close(),
  };
}

/** Length-prefixed gRPC messages from a stream, decoded; a gRPC status instead of a message becomes a StepFailure. */
function grpcMessages(stream: ClientHttp2Stream) {
  let buffered = Buffer.alloc(0);
  const ready: ConnectResponse[] = [];
  let failure: StepFailure | undefined;
  let wake: (() => void) | undefined;
  const status = (headers: Record<string, unknown>) => {
    const code = headers["grpc-status"];
    if (code === undefined || code === "0") return;
    const message = decodeURIComponent(String(headers["grpc-message"] ?? ""));
    failure =
      code === "16"
        ? new StepFailure(`the key was refused: ${message}`, "check the key, or create one: ferry admin keys create TENANT")
        : code === "7"
          ? new StepFailure(`the tunnel was refused: ${message}`, "the tenant may be disabled: ask the relay's operator")
          : new StepFailure(`the relay ended the tunnel with gRPC status ${code}: ${message}`, "check the relay's logs");
    wake?.();
  };
  stream.on("response", (h) => status(h));
  stream.on("trailers", (h) => status(h));
  stream.on("data", (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 5 && buffered.length >= 5 + buffered.readUInt32BE(1)) {
      const size = buffered.readUInt32BE(1);
      ready.push(decodeConnectResponse(buffered.subarray(5, 5 + size)));
      buffered = buffered.subarray(5 + size);
    }
    wake?.();
  });
  stream.on("close", () => {
    failure ??= new StepFailure("the relay closed the tunnel", "check the relay's logs");
    wake?.();
  });
  stream.on("error", () => {});
  return {
    async next(timeoutMs: number): Promise<ConnectResponse> {
      const deadline = Date.now() + timeoutMs;
      while (ready.length === 0) {
        if (failure) throw failure;
        if (Date.now() >= deadline) throw new StepFailure("no answer on the tunnel in time", "check the relay's logs");
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, deadline - Date.now()).unref();
        });
      }
      return ready.shift()!;
    },
  };
}

function get(session: ClientHttp2Session, path: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":path": path });
    const timer = setTimeout(() => {
      stream.close();
      reject(new StepFailure(`GET ${path} got no answer in time`, "check the relay's logs"));
    }, timeoutMs);
    let status = 0;
    let body = "";
    stream.setEncoding("utf8");
    stream.on("response", (h) => (status = Number(h[":status"])));
    stream.on("data", (c: string) => (body += c));
    stream.on("end", () => {
      clearTimeout(timer);
      resolve({ status, body });
    });
    stream.on("error", (err) => {
      clearTimeout(timer);
      reject(new StepFailure(`GET ${path} failed: ${err.message}`, "check the relay's logs"));
    });
  });
}
