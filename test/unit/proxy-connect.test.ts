import { createServer, type AddressInfo, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FerryError } from "../../core/errors.js";
import { connectThroughProxy, ProxyError } from "../../clients/connector/proxy.js";
import { reachRelay } from "../../clients/connector/relay-diagnosis.js";

// A proxy's refusal carries what went wrong (`detail`) and what to check (`fix`) apart, for `ferry doctor`, and
// both in its message, for the connector's log line.
let proxy: Server;
let proxyPort: number;
let closedPort: number;
const seen: string[] = [];

beforeAll(async () => {
  // Answers CONNECT with the status named by the destination port: CONNECT x:407 gets a 407.
  proxy = createServer((socket) => {
    socket.once("data", (head) => {
      const line = head.toString("latin1").split("\r\n")[0]!;
      seen.push(line);
      const status = Number(/:(\d+) HTTP/.exec(line)?.[1]);
      const reason = { 200: "Connection established", 401: "Unauthorized", 403: "Forbidden", 407: "Proxy Authentication Required", 502: "Bad Gateway" }[status] ?? "";
      socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Length: 0\r\n\r\n`);
    });
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  proxyPort = (proxy.address() as AddressInfo).port;
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
  closedPort = (closed.address() as AddressInfo).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
});

afterAll(async () => {
  await new Promise<void>((resolve) => proxy.close(() => resolve()));
});

const refusal = (url: string, host: string, port: number) =>
  connectThroughProxy({ proxy: new URL(url), host, port }).then(
    () => expect.fail("the proxy accepted"),
    (err: unknown) => err as ProxyError,
  );

describe("connectThroughProxy refusals", () => {
  it.each([
    [407, "", "the proxy wants credentials: give them in --proxy as http://user:password@proxy:port"],
    [407, "user:pw@", "check --proxy credentials (http://user:password@proxy:port)"],
    [401, "user:pw@", "check --proxy credentials (http://user:password@proxy:port)"],
    [403, "", "the proxy does not allow this destination or port; ask for the relay's host and port to be allowed"],
    [502, "", "the proxy could not reach the relay; check the relay URL, or whether the proxy may reach it"],
    [418, "", "check --proxy"],
  ])("%d (credentials %j): the fix apart from the detail", async (status, creds, fix) => {
    const err = await refusal(`http://${creds}127.0.0.1:${proxyPort}`, "relay.example.com", status);
    expect(err).toBeInstanceOf(ProxyError);
    expect(err).toBeInstanceOf(FerryError);
    expect(err.status).toBe(status);
    expect(err.detail).toMatch(new RegExp(`^proxy 127\\.0\\.0\\.1:${proxyPort} refused CONNECT to relay\\.example\\.com:${status}: ${status}\\b`));
    expect(err.fix).toBe(fix);
    expect(err.message).toBe(`${err.detail} — ${fix}`);
    expect(err.message).not.toContain("pw"); // no password in messages
  });

  it("brackets an IPv6 destination in the CONNECT line and the detail", async () => {
    const err = await refusal(`http://127.0.0.1:${proxyPort}`, "::1", 403);
    expect(seen.at(-1)).toBe("CONNECT [::1]:403 HTTP/1.1");
    expect(err.detail).toBe(`proxy 127.0.0.1:${proxyPort} refused CONNECT to [::1]:403: 403 Forbidden`);
  });

  it("says when the proxy cannot be reached, and what to check", async () => {
    const err = await refusal(`http://127.0.0.1:${closedPort}`, "relay.example.com", 443);
    expect(err).toBeInstanceOf(ProxyError);
    expect(err.status).toBeUndefined();
    expect(err.detail).toMatch(new RegExp(`^cannot reach the proxy 127\\.0\\.0\\.1:${closedPort}: .*ECONNREFUSED`));
    expect(err.fix).toBe("check --proxy / HTTPS_PROXY");
    expect(err.message).toBe(`${err.detail} — check --proxy / HTTPS_PROXY`);
  });
});

describe("reachRelay", () => {
  it("connects directly without a proxy, and through it with one", async () => {
    const direct = await reachRelay("127.0.0.1", proxyPort, undefined, 5_000);
    expect(direct.remotePort).toBe(proxyPort);
    direct.destroy();
    const tunneled = await reachRelay("relay.example.com", 200, new URL(`http://127.0.0.1:${proxyPort}`), 5_000);
    expect(seen.at(-1)).toBe("CONNECT relay.example.com:200 HTTP/1.1");
    tunneled.destroy();
  });

  it("rejects with the socket's own error when nothing listens", async () => {
    await expect(reachRelay("127.0.0.1", closedPort, undefined, 5_000)).rejects.toMatchObject({ code: "ECONNREFUSED" });
  });
});
