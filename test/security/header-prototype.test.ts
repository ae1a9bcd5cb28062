import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { HostileConnector } from "../helpers/hostile-connector.js";
import { request } from "../helpers/http.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { rawPeer, within } from "./raw-peers.js";

// Finding 14 (header maps): names like __proto__ and constructor are ordinary header names. A map built on {} drops
// the first (it sets the prototype) and finds a function for the second; every map of peer-supplied names has none.
const NAMES = ["__proto__", "constructor", "toString", "hasOwnProperty"];
let relay: TestRelay;
let evil: HostileConnector;
let app: Server;
let connector: Connector;
const seenRaw: string[][] = [];

beforeAll(async () => {
  relay = await startTestRelay();
  evil = await HostileConnector.connect(relay.url, await relay.tenantWithKey("evil"));
  app = createServer((req, res) => {
    seenRaw.push(req.rawHeaders);
    req.resume();
    for (const name of NAMES) res.setHeader(name, `response ${name}`);
    res.end("ok");
  });
  await new Promise<void>((resolve) => app.listen(0, "127.0.0.1", resolve));
  connector = await startTestConnector(relay.url, await relay.tenantWithKey("acme"), { app: `http://127.0.0.1:${(app.address() as AddressInfo).port}` }, { tunnels: 1 });
});

afterAll(async () => {
  evil?.destroy();
  await connector?.stop();
  await relay?.close();
  app?.closeAllConnections();
  await new Promise((resolve) => app?.close(resolve));
});

/** The header lines of a raw HTTP/1.1 answer, as [lower-case name, value]. */
function headerLines(text: string): Array<[string, string]> {
  const head = text.slice(0, text.indexOf("\r\n\r\n"));
  return head
    .split("\r\n")
    .slice(1)
    .map((line) => [line.slice(0, line.indexOf(":")).toLowerCase(), line.slice(line.indexOf(":") + 1).trim()] as [string, string]);
}

describe("header names that are Object.prototype's", () => {
  it("reach the target from the client", async () => {
    const peer = await rawPeer(relay.url);
    peer.socket.write(`GET /relay/acme/app/x HTTP/1.1\r\nHost: relay\r\n${NAMES.map((n) => `${n}: request ${n}\r\n`).join("")}Connection: close\r\n\r\n`);
    await within(peer.closed, 10_000, "the answer");
    const raw = seenRaw.at(-1)!;
    const lower = raw.map((v, i) => (i % 2 === 0 ? v.toLowerCase() : v));
    for (const name of NAMES) expect(lower[lower.indexOf(name.toLowerCase()) + 1], name).toBe(`request ${name}`);
  });

  it("reach the client from a hostile connector, in the head and in trailers", async () => {
    const peer = await rawPeer(relay.url);
    peer.socket.write("GET /relay/evil/app/x HTTP/1.1\r\nHost: relay\r\nTE: trailers\r\nConnection: close\r\n\r\n");
    const ex = await evil.nextRequest(evil.frames().length);
    const headers = NAMES.map((n) => [n, `head ${n}`] as [string, string]);
    evil.respond(ex!.id, 200, headers, "body", NAMES.map((n) => [n, `trailer ${n}`]));
    const { bytes } = await within(peer.closed, 10_000, "the answer");
    const text = bytes.toString("latin1");
    expect(text).toMatch(/^HTTP\/1\.1 200 /);
    const lines = headerLines(text);
    for (const name of NAMES) expect(lines.find(([n]) => n === name.toLowerCase())?.[1], name).toBe(`head ${name}`);
    // Chunked, then the trailer section.
    for (const name of NAMES) expect(text, name).toContain(`${name.toLowerCase()}: trailer ${name}\r\n`);
  });

  it("reach the client from an ordinary target through the connector", async () => {
    const res = await request(`${relay.url}/relay/acme/app/x`);
    expect(res.status).toBe(200);
    const names = res.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    // constructor and the others: the whole path, connector included. __proto__ is checked on the relay's own
    // maps above (a hostile connector sends it directly); the connector's HTTP client is its own concern.
    for (const name of NAMES.filter((n) => n !== "__proto__")) expect(names, name).toContain(name.toLowerCase());
  });
});
