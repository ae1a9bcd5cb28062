import { connect as http2Connect } from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { SPOOFABLE_HEADERS } from "../../services/gateway/spoofable-headers.js";
import { json, request } from "../helpers/http.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { rawPeer, within } from "./raw-peers.js";

// Finding 12: what a client says about itself never reaches the target as if a proxy had said it, and a request
// whose host is ambiguous is refused before anything reads one of its names.
let relay: TestRelay;
let target: TestTarget;
let connector: Connector;

beforeAll(async () => {
  target = await startTestTarget();
  relay = await startTestRelay();
  connector = await startTestConnector(relay.url, await relay.tenantWithKey("acme"), { app: target.url, orig: { url: target.url, hostHeader: "original" } }, { tunnels: 1 });
});

afterAll(async () => {
  await connector?.stop();
  await relay?.close();
  await target?.close();
});

type Seen = { headers: Record<string, string>; rawHeaders: string[] };

describe("identity and override headers from clients", () => {
  it("drops every header in which a proxy would vouch for the client, its connection, its URL or its sign-in", async () => {
    const claims = Object.fromEntries([...SPOOFABLE_HEADERS].map((name) => [name, name === "x-original-url" ? "/admin" : "127.0.0.1"]));
    const seen = json<Seen>(await request(`${relay.url}/relay/acme/app/json`, { headers: { ...claims, "x-kept": "yes" } }));
    const names = new Set(seen.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase()));
    expect([...SPOOFABLE_HEADERS].filter((n) => names.has(n))).toEqual([]);
    expect(seen.headers["x-kept"]).toBe("yes");
  });

  it("drops the client's Via (the relay adds none: targets would stop compressing)", async () => {
    const seen = json<Seen>(await request(`${relay.url}/relay/acme/app/json`, { headers: { via: "1.1 trusted-cache" } }));
    expect(seen.headers.via).toBeUndefined();
  });

  it("never repeats the client's Host as X-Forwarded-Host or as the Host of a hostHeader: original target", async () => {
    const seen = json<Seen>(await request(`${relay.url}/relay/acme/orig/json`, { headers: { host: "evil.example" } }));
    expect(seen.headers["x-forwarded-host"]).toBeUndefined();
    expect(seen.headers.forwarded).not.toContain("evil");
    expect(seen.headers.host).toBe(new URL(target.url).host);
  });
});

describe("ambiguous Host", () => {
  const raw = async (head: string) => {
    const peer = await rawPeer(relay.url);
    peer.socket.write(head);
    const { bytes } = await within(peer.closed, 10_000, "a refused request's connection");
    return bytes.toString("latin1");
  };

  it("refuses two Host headers with 400 bad_host, before the target sees anything", async () => {
    const before = target.seen.length;
    const text = await raw("GET /relay/acme/app/json HTTP/1.1\r\nHost: relay.example.com\r\nHost: evil.example\r\nConnection: close\r\n\r\n");
    expect(text).toMatch(/^HTTP\/1\.1 400 /);
    expect(text).toContain('"code":"bad_host"');
    expect(target.seen.length).toBe(before);
  });

  it("refuses a Host that is not a host name with an optional port", async () => {
    const text = await raw("GET /relay/acme/app/json HTTP/1.1\r\nHost: evil.example/path@x\r\nConnection: close\r\n\r\n");
    expect(text).toMatch(/^HTTP\/1\.1 400 /);
    expect(text).toContain('"code":"bad_host"');
  });

  it("refuses an HTTP/2 request whose :authority and host differ", async () => {
    const session = http2Connect(relay.url);
    session.on("error", () => {});
    try {
      const answer = (headers: Record<string, string>) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const stream = session.request({ ":path": "/relay/acme/app/json", ...headers });
          let status = 0;
          let body = "";
          stream.on("response", (h) => (status = Number(h[":status"])));
          stream.setEncoding("utf8");
          stream.on("data", (d: string) => (body += d));
          stream.on("end", () => resolve({ status, body }));
          stream.on("error", reject);
        });
      const bad = await answer({ ":authority": "relay.example.com", host: "evil.example" });
      expect(bad.status).toBe(400);
      expect(bad.body).toContain('"code":"bad_host"');
      // The same name twice (case and a trailing dot aside) is not ambiguous.
      const same = await answer({ ":authority": "relay.example.com", host: "Relay.Example.com." });
      expect(same.status).toBe(200);
    } finally {
      session.close();
    }
  });
});
