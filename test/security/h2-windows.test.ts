import { once } from "node:events";
import type { Http2ServerRequest, Http2Session } from "node:http2";
import { connect as http2Connect, type ClientHttp2Session } from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { MIN_WINDOW } from "../../core/exchange/protocol.js";
import { encodeTunnelMessage, TUNNEL_PATH } from "../../core/exchange/tunnel-codec.js";
import { create } from "@bufbuild/protobuf";
import { ConnectRequestSchema } from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";
import { listen, type RelayServer } from "../../services/relay/server.js";
import { TUNNEL_CONNECTION_WINDOW, TUNNEL_STREAM_WINDOW } from "../../services/tunnel/tunnel-windows.js";
import { HostileConnector } from "../helpers/hostile-connector.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { eventually } from "../helpers/wait.js";

// Finding 6 of issue 12: HTTP/2 clients got the tunnel's windows (1 MiB per stream, 32 MiB per
// connection), so a few slow anonymous uploads parked ~70 MB of relay memory per connection.
// Clients now get limits.clientStreamWindow/clientConnectionWindow; only a connector's session,
// once its key checked out, is widened (services/tunnel/tunnel-windows.ts).
const KiB = 1024;
const limits = { clientStreamWindow: 64 * KiB, clientConnectionWindow: 128 * KiB };

let relay: TestRelay;
/** A second server on the same relay that lets the test see each tunnel stream's session on the relay's side. */
let watched: RelayServer;
const tunnelSessions: Array<{ session: Http2Session; streamWindowAtStart: number | undefined }> = [];
let target: TestTarget;
let connector: Connector | undefined;

beforeAll(async () => {
  [relay, target] = await Promise.all([startTestRelay({ limits }), startTestTarget()]);
  const { listeners } = relay.relay;
  watched = await listen(
    {
      request(req, res) {
        if ("stream" in req && req.url === TUNNEL_PATH) {
          const session = (req as Http2ServerRequest).stream.session!;
          tunnelSessions.push({ session, streamWindowAtStart: session.localSettings.initialWindowSize });
        }
        listeners.request(req, res);
      },
      upgrade: listeners.upgrade,
    },
    { host: "127.0.0.1", port: 0, keepaliveMs: relay.relay.keepaliveMs, limits: relay.relay.limits, faults: relay.relay.faults },
  );
});

afterAll(async () => {
  await connector?.stop();
  await watched?.close(100);
  await Promise.all([relay?.close(), target?.close()]);
});

async function clientSession(url: string): Promise<ClientHttp2Session> {
  const session = http2Connect(url);
  session.on("error", () => {});
  await once(session, "remoteSettings");
  return session;
}

/** A PING frame: 9 bytes of frame header, 8 of payload. */
const PING_BYTES = 17;

/** Resolves once the client has stopped sending: two PING round trips in a row with nothing but the PINGs on its socket. */
async function stalled(session: ClientHttp2Session): Promise<number> {
  const ping = () => new Promise<void>((resolve, reject) => session.ping((err) => (err ? reject(err) : resolve())));
  for (;;) {
    const before = session.socket.bytesWritten;
    await ping();
    await ping();
    if (session.socket.bytesWritten - before === 2 * PING_BYTES) return before;
  }
}

describe("HTTP/2 windows", () => {
  it("gives a client session the client windows", async () => {
    const session = await clientSession(relay.url);
    expect(session.remoteSettings.initialWindowSize).toBe(limits.clientStreamWindow);
    await eventually(() => session.state.remoteWindowSize === limits.clientConnectionWindow, "the connection window update");
    session.close();
  });

  it("holds an upload nobody reads to about the stream window", async () => {
    const key = await relay.tenantWithKey("windows");
    // A connector that takes the request and never gives credit back: the relay holds the rest.
    const hostile = await HostileConnector.connect(relay.url, key, { requestWindow: MIN_WINDOW });
    const session = await clientSession(relay.url);
    const size = 4 * 1024 * KiB;
    const stream = session.request({ ":method": "POST", ":path": "/relay/windows/app/upload", "content-length": String(size) });
    stream.on("error", () => {});
    stream.write(Buffer.alloc(size));
    const exchange = await hostile.nextRequest();
    await hostile.nextFrame((f) => f.kind.case === "data");
    const sent = await stalled(session);
    // What the relay may hold: the stream window, the request's credit, one read buffer and a frame; not 1 MiB.
    expect(sent).toBeGreaterThan(limits.clientStreamWindow);
    expect(sent).toBeLessThan(limits.clientStreamWindow + MIN_WINDOW + 128 * KiB);
    expect(exchange).toBeDefined();
    stream.close();
    session.close();
    hostile.destroy();
  });

  it("widens a connector's session only once its tunnel is authenticated", async () => {
    const key = await relay.tenantWithKey("wide");
    connector = await startTestConnector(watched.url, key, { app: target.url }, { tunnels: 1 });
    expect(tunnelSessions).toHaveLength(1);
    const [{ session, streamWindowAtStart }] = tunnelSessions as [(typeof tunnelSessions)[number]];
    // While its key was being checked, the session had a client's windows (or HTTP/2's default, before the ACK).
    expect(streamWindowAtStart).toBeLessThanOrEqual(limits.clientStreamWindow);
    // services/tunnel/tunnel-endpoint.ts widens it (widenTunnelSession) once the key, Hello and limits check out.
    await eventually(() => session.localSettings.initialWindowSize === TUNNEL_STREAM_WINDOW, "the tunnel's stream window");
    expect(session.state.localWindowSize).toBeGreaterThan(TUNNEL_CONNECTION_WINDOW / 2);
  });

  it("serves nothing but tunnels on a widened session: a client request there would get the tunnel's windows", async () => {
    const key = await relay.tenantWithKey("shared");
    const hostile = await HostileConnector.connect(relay.url, key, { targets: [{ name: "app" }] });
    expect(hostile.welcome).toBeDefined();
    await eventually(() => hostile.session.remoteSettings.initialWindowSize === TUNNEL_STREAM_WINDOW, "the tunnel's stream window");
    const req = hostile.session.request({ ":path": "/relay/shared/app/x" });
    const [headers] = (await once(req, "response")) as [Record<string, unknown>];
    const body: Buffer[] = [];
    for await (const chunk of req) body.push(chunk as Buffer);
    expect(headers[":status"]).toBe(403);
    expect(JSON.parse(Buffer.concat(body).toString()).error.code).toBe("tunnel_connection");
    // The tunnel itself is untouched.
    expect(hostile.isClosed).toBe(false);
    hostile.destroy();
  });

  it("welcomes many tunnels on one connection (other gRPC clients multiplex them), widening it once", async () => {
    const key = await relay.tenantWithKey("many");
    const session = await clientSession(relay.url);
    const hello = encodeTunnelMessage(
      create(ConnectRequestSchema, { message: { case: "hello", value: { protocolVersion: 1, connectorId: "multi", targets: [{ name: "app" }] } } }),
      true,
    );
    const welcomed = await Promise.all(
      // More than Node lets a session have SETTINGS unacknowledged (10), fewer than maxTunnelsPerKey (16).
      Array.from({ length: 14 }, () => {
        const stream = session.request({ ":method": "POST", ":path": TUNNEL_PATH, "content-type": "application/grpc", te: "trailers", authorization: `Bearer ${key}` });
        stream.write(hello);
        // The first bytes back are Welcome's gRPC frame; a refused tunnel ends with a status instead.
        return new Promise<boolean>((resolve) => {
          stream.once("data", () => resolve(true));
          stream.once("end", () => resolve(false));
          stream.once("close", () => resolve(false));
        });
      }),
    );
    expect(welcomed.every(Boolean)).toBe(true);
    expect(session.remoteSettings.initialWindowSize).toBe(TUNNEL_STREAM_WINDOW);
    session.destroy();
  });

  it("keeps the client windows for a tunnel whose key is wrong", async () => {
    const hostile = await HostileConnector.open(watched.url, "fck_0123456789abcdef_nope");
    // The stream window of every SETTINGS the relay sends this session, from the first (maybe read already) to the last.
    const streamWindows = [hostile.session.remoteSettings.initialWindowSize];
    hostile.session.on("remoteSettings", (s) => streamWindows.push(s.initialWindowSize));
    hostile.hello();
    const end = await hostile.ended;
    expect(end.grpcStatus).toBe(16);
    await once(hostile.session, "close");
    expect(tunnelSessions.length).toBeGreaterThan(1);
    // HTTP/2's default (65,535) until the first SETTINGS is read, then the client window; never the tunnel's.
    expect(Math.max(...streamWindows.map(Number))).toBe(limits.clientStreamWindow);
  });
});
