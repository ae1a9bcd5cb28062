import { validateHeaderName, validateHeaderValue } from "node:http";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { FerryError } from "../../core/errors.js";
import { endToEndHeaders, header } from "../../core/headers.js";
import type { ResponseHead } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { authorityOf, requestAuthority } from "../../services/gateway/authority.js";
import { scopeSetCookie } from "../../services/gateway/cookie-scope.js";
import { forwardingHeaders, parseTrustedProxies } from "../../services/gateway/forwarded.js";
import type { NodeRequest } from "../../services/http/http-error.js";
import { createHostRouting } from "../../services/gateway/host-route.js";
import { parseHostPath, parseRelayPath } from "../../services/gateway/relay-path.js";
import { BadResponse, frameResponse } from "../../services/gateway/response-head.js";
import { crossTenantRefusal } from "../../services/gateway/shared-origin.js";
import { SPOOFABLE_HEADERS } from "../../services/gateway/spoofable-headers.js";
import { clientTrailers } from "../../services/gateway/trailers.js";
import { fuzzSeed, type Rng, rng } from "../helpers/fuzz.js";
import { request } from "../helpers/http.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { rawPeer, within } from "./raw-peers.js";

// The gateway's request parsing against random and mutated input, seeded (FUZZ_SEED=<n> replays a run): the
// pure parts (paths, host routing, authorities, forwarding and hop-by-hop filtering, response framing, cookie
// scoping) either answer or throw a FerryError, and what they answer is what Node's writers accept; then raw
// HTTP/1.1 bytes against a live relay: every answer is a sequence of well-formed responses (the last one maybe
// cut off) or a closed connection, nothing throws, and memory stays bounded.
const SEED = fuzzSeed("gateway-fuzz");
const PURE_CASES = 4000;
const RAW_CASES = 1500;
const PARALLEL = 32;

/** Pieces input is made of: the characters and words parsers branch on, and some they should never see. */
const PIECES = [
  "/", "/", "/", ".", "..", "%", "%2f", "%2F", "%5c", "%00", "%2e", "%2e%2e", "%25", "%zz", "%e9", "\\", ";", "?", "#", "&", "=", ":",
  "@", "[", "]", " ", "\t", "\r", "\n", "\u0000", "\u00e9", "\u2028", "\ud800", "relay", "acme", "app", "a", "A", "-", "_", "~", "*", "'",
  "\"", ",", "0", "9", "x".repeat(70), "relay.test", ".relay.test", ":443", ":", "localhost", "[::1]", "127.0.0.1", "__proto__",
];

function piecesString(r: Rng, max = 12): string {
  let s = "";
  for (let i = r.int(max); i >= 0; i--) s += r.pick(PIECES);
  return s;
}

function randomPath(r: Rng): string {
  const starts = ["/relay/", "/relay/acme/", "/relay/acme/app/", "/relay/acme/app", "/", "", "relay/", "//relay/acme/app/"];
  return r.pick(starts) + piecesString(r);
}

/** Node's own validators: if they accept a field, Node's HTTP/1.1 and HTTP/2 writers do too. */
function writable(name: string, value: string): boolean {
  try {
    validateHeaderName(name);
    validateHeaderValue(name, value);
    return !name.startsWith(":");
  } catch {
    return false;
  }
}

/** Runs `fn`; anything it throws must be a FerryError. */
function answersOrRefuses<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch (err) {
    if (!(err instanceof FerryError)) throw new Error(`threw ${String(err)} instead of a FerryError`, { cause: err });
    return undefined;
  }
}

describe(`gateway parsing, pure (FUZZ_SEED=${SEED})`, () => {
  const r = rng(SEED);

  it("parses paths into a canonical target path or refuses them", () => {
    const routing = createHostRouting("relay.test");
    for (let i = 0; i < PURE_CASES; i++) {
      const url = randomPath(r);
      const where = answersOrRefuses(() => parseRelayPath(url));
      if (where) {
        const what = `${JSON.stringify(url)} -> ${JSON.stringify(where.path)}`;
        expect(where.path.startsWith("/"), what).toBe(true);
        expect(where.path.split("/").some((s) => s === "." || s === ".."), what).toBe(false);
        expect(/%(2f|5c|00)/i.test(where.path), what).toBe(false);
        expect(where.prefix).toBe(`/relay/${where.tenant}/${where.target}`);
        // Canonical: parsing the result again changes nothing.
        expect(parseRelayPath(`${where.prefix}${where.path}`).path, what).toBe(where.path);
      }
      const hosted = answersOrRefuses(() => parseHostPath(url, "acme", "app"));
      if (hosted) expect(hosted.path.startsWith("/")).toBe(true);
      const authority = piecesString(r, 6) + r.pick(["", ".relay.test", "app.acme.relay.test", ".Relay.Test.:80"]);
      if (routing.owns(authority)) answersOrRefuses(() => routing.route(authority, url));
    }
  });

  it("reads one authority of a request or refuses it as ambiguous", () => {
    for (let i = 0; i < PURE_CASES; i++) {
      const raw: string[] = [];
      for (let n = r.int(4); n > 0; n--) raw.push(r.pick(["Host", "host", "HOST", "x-host", "Accept"]), piecesString(r, 5));
      const h2 = r.chance(0.3);
      const req = { rawHeaders: raw, headers: h2 && r.chance(0.7) ? { ":authority": piecesString(r, 4) } : {}, ...(h2 ? { stream: {} } : {}) } as unknown as NodeRequest;
      const authority = answersOrRefuses(() => requestAuthority(req));
      if (authority !== undefined) expect(authority).toMatch(/^[A-Za-z0-9\-._~!$&'()*+,;=%[\]:]*$/);
      expect(() => authorityOf(req)).not.toThrow();
    }
  });

  it("filters request headers and sets forwarding headers Node can write, from any input", () => {
    const trusted = parseTrustedProxies(["10.0.0.0/8", "::1"]);
    for (let i = 0; i < PURE_CASES; i++) {
      const raw: string[] = [];
      for (let n = r.int(8); n > 0; n--) {
        raw.push(r.pick(["Connection", "TE", "Upgrade", "Keep-Alive", "X-A", "x-ferry-tenant", ":path", "Host", "Cookie", ...SPOOFABLE_HEADERS]), piecesString(r, 4));
      }
      const out = endToEndHeaders(raw, { drop: SPOOFABLE_HEADERS, upgrade: r.chance(0.2) });
      for (const h of out) {
        expect(h.name).toBe(h.name.toLowerCase());
        expect(h.name.startsWith(":") || h.name.startsWith("x-ferry-") || SPOOFABLE_HEADERS.has(h.name)).toBe(false);
      }
      const fwd = forwardingHeaders(
        {
          // What a socket reports: an address, or nothing once the peer is gone.
          remoteAddress: r.pick(["10.1.2.3", "10.0.0.2", "203.0.113.9", "::1", "::ffff:10.0.0.1", "2001:db8::5", ""]),
          encrypted: r.chance(0.5),
          host: r.chance(0.5) ? r.pick(["relay.example.com", "app.acme.relay.test:8443"]) : undefined,
          incoming: {
            forwardedFor: r.chance(0.7) ? piecesString(r, 6) + r.pick(["", ", 198.51.100.1", "10.0.0.2"]) : undefined,
            proto: r.pick([undefined, "http", "https", piecesString(r, 2)]),
            host: r.pick([undefined, "app.example", "a.example:1"]),
            via: r.pick([undefined, "1.1 lb"]),
          },
          prefix: r.pick(["", "/relay/acme/app"]),
        },
        trusted,
      );
      // The relay writes these to the target itself; from garbage in, they stay fields a writer accepts.
      for (const h of fwd.headers.filter((x) => x.name !== "x-forwarded-for")) expect(writable(h.name, h.value), `${h.name}: ${h.value}`).toBe(true);
    }
  });

  it("frames any response head and trailers into what Node's writers accept, or refuses it as a bad response", () => {
    const names = ["content-length", "content-type", "set-cookie", "location", "transfer-encoding", "connection", "x-a", "etag", ":status", "te", "trailer"];
    for (let i = 0; i < PURE_CASES; i++) {
      const fields = Array.from({ length: r.int(8) }, () =>
        header(r.chance(0.8) ? r.pick(names) : piecesString(r, 3), r.chance(0.5) ? r.pick(["1", "0", "12", "a", "chunked", "close"]) : piecesString(r, 4)),
      );
      const head: ResponseHead = {
        $typeName: "ferry.tunnel.v1.ResponseHead",
        status: r.chance(0.8) ? r.pick([100, 101, 200, 204, 304, 404, 599, 600]) : r.int(2000),
        headers: fields,
        endStream: r.chance(0.3),
      };
      let framed;
      try {
        framed = frameResponse(head, { method: r.pick(["GET", "HEAD", "POST"]), upgrade: r.chance(0.2) });
      } catch (err) {
        expect(err).toBeInstanceOf(BadResponse);
        continue;
      }
      expect(framed.status >= 200 && framed.status <= 599 || framed.status === 101).toBe(true);
      expect(framed.headers.filter((h) => h.name === "content-length").length).toBeLessThanOrEqual(1);
      for (const h of framed.headers) expect(writable(h.name, h.value), `${h.name}: ${h.value}`).toBe(true);
      for (const t of clientTrailers(fields, () => {})) expect(writable(t.name, t.value), `${t.name}: ${t.value}`).toBe(true);
    }
  });

  it("scopes any Set-Cookie to its prefix, and tells cross-tenant requests from any Referer without throwing", () => {
    for (let i = 0; i < PURE_CASES; i++) {
      const value = `${piecesString(r, 3)}=${piecesString(r, 3)}${Array.from({ length: r.int(4) }, () => `; ${r.pick(["Path", "path", "Domain", "Secure", "x"])}=${piecesString(r, 4)}`).join("")}`;
      const scoped = scopeSetCookie(value, "/relay/acme/app");
      if (scoped !== undefined) {
        const paths = scoped.split(";").map((s) => s.trim()).filter((s) => /^path=/i.test(s));
        expect(paths, value).toHaveLength(1);
        expect(paths[0]!.startsWith("Path=/relay/acme/app"), value).toBe(true);
        expect(scoped.split(";").some((s) => /^\s*domain\s*(=|$)/i.test(s)), value).toBe(false);
      }
      const refusal = crossTenantRefusal(
        { "sec-fetch-site": r.pick(["same-origin", "none", piecesString(r, 2)]), referer: r.chance(0.8) ? `http://x${randomPath(r)}` : undefined },
        "acme",
      );
      if (refusal) expect(refusal.code).toBe("cross_tenant_request");
    }
  });
});

// ---- Raw HTTP/1.1 bytes against a live relay ----

/**
 * Splits what a connection answered into HTTP/1.1 responses and says what is wrong with it, if anything: each
 * must be a status line, header lines and a body framed by Content-Length, chunked coding or the close; only the
 * last may be cut off (a broken response is a closed connection).
 */
function problemWith(bytes: Buffer): string | undefined {
  let at = 0;
  const text = bytes.toString("latin1");
  while (at < text.length) {
    const end = text.indexOf("\r\n\r\n", at);
    if (end < 0) return text.startsWith("HTTP/1.1 ", at) || "HTTP/1.1 ".startsWith(text.slice(at)) ? undefined : `garbage at ${at}: ${JSON.stringify(text.slice(at, at + 40))}`;
    const lines = text.slice(at, end).split("\r\n");
    const status = /^HTTP\/1\.1 (\d{3}) [^\r\n]*$/.exec(lines[0]!);
    if (!status) return `bad status line ${JSON.stringify(lines[0])}`;
    const code = Number(status[1]);
    const fields = new Map<string, string[]>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      const name = line.slice(0, colon).toLowerCase();
      if (colon <= 0 || !writable(name, line.slice(colon + 1).trim())) return `bad header line ${JSON.stringify(line)}`;
      fields.set(name, [...(fields.get(name) ?? []), line.slice(colon + 1).trim()]);
    }
    at = end + 4;
    const lengths = fields.get("content-length") ?? [];
    if (lengths.length > 1) return "two Content-Length";
    if (code < 200 || code === 204 || code === 304) continue;
    if (fields.get("transfer-encoding")?.join(",").toLowerCase() === "chunked") {
      for (;;) {
        const eol = text.indexOf("\r\n", at);
        if (eol < 0) return undefined; // cut off
        const size = parseInt(text.slice(at, eol), 16);
        if (!/^[0-9a-f]+$/i.test(text.slice(at, eol))) return `bad chunk size ${JSON.stringify(text.slice(at, eol))}`;
        at = eol + 2;
        if (size === 0) {
          const trailerEnd = text.indexOf("\r\n\r\n", at - 2);
          if (trailerEnd < 0) return undefined;
          at = trailerEnd + 4;
          break;
        }
        at += size + 2;
        if (at > text.length) return undefined;
      }
    } else if (lengths.length === 1) {
      at += Number(lengths[0]);
    } else {
      return undefined; // delimited by the close: the rest is its body
    }
  }
  return undefined;
}

const METHODS = ["GET", "GET", "POST", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "PROPFIND", "get", "G ET", "", "CONNECT"];
const TARGETS = [
  "/relay/acme/app/echo",
  "/relay/acme/app/json?x=1&y=%2F",
  "/relay/acme/app/bytes?size=3000",
  "/relay/acme/app/trailers",
  "/relay/acme/app/cookies",
  "/relay/acme/nothing/x",
  "/relay/nobody/app/x",
  "/relay/acme/app/../../x",
  "*",
  "http://evil.example/relay/acme/app/json",
  "/healthz",
];

function randomHeaders(r: Rng): string[] {
  const lines: string[] = [];
  const hosts = r.pick([0, 1, 1, 1, 1, 2]);
  for (let i = 0; i < hosts; i++) lines.push(`Host: ${r.chance(0.8) ? "relay.example.com" : piecesString(r, 3)}`);
  const extras = [
    () => "Connection: close",
    () => "Connection: keep-alive, x-a",
    () => "X-A: 1",
    () => "Transfer-Encoding: chunked",
    () => `Transfer-Encoding: ${r.pick([" chunked", "chunked, gzip", "gzip", "identity", "CHUNKED"])}`,
    () => `Content-Length: ${r.pick(["0", "5", "10", "-1", "abc", "5, 5", "99999999999"])}`,
    () => "Upgrade: websocket",
    () => "Expect: 100-continue",
    () => "Sec-Fetch-Site: same-origin",
    () => `Referer: http://relay.example.com${randomPath(r)}`,
    () => `traceparent: ${piecesString(r, 3)}`,
    () => `X-Request-Id: ${piecesString(r, 3)}`,
    () => `Cookie: a=1; ${piecesString(r, 2)}`,
    () => `${r.pick([...SPOOFABLE_HEADERS])}: 127.0.0.1`,
    () => `${piecesString(r, 2)}: ${piecesString(r, 3)}`,
    () => `X-Long: ${"v".repeat(r.pick([100, 9000, 70_000]))}`,
    () => "__proto__: x",
  ];
  for (let n = r.int(6); n > 0; n--) lines.push(r.pick(extras)());
  return lines;
}

function randomBody(r: Rng, chunked: boolean): string {
  if (!chunked) return r.chance(0.5) ? "" : piecesString(r, 6);
  let body = "";
  for (let n = r.int(4); n > 0; n--) {
    const data = "d".repeat(r.int(40));
    body += `${r.chance(0.9) ? data.length.toString(16) : piecesString(r, 2)}${r.chance(0.1) ? ";ext=1" : ""}\r\n${data}\r\n`;
  }
  return body + (r.chance(0.8) ? `0\r\n${r.chance(0.2) ? "X-Trailer: 1\r\n" : ""}\r\n` : "");
}

/** A request a client might well send: a known method and path, one Host, a body framed as declared. */
function plainRequest(r: Rng): string {
  const method = r.pick(["GET", "POST", "PUT", "DELETE", "OPTIONS"]);
  const body = method === "GET" || method === "OPTIONS" || method === "DELETE" ? "" : "b".repeat(r.int(200));
  const path = r.pick(TARGETS.slice(0, 5));
  const framing = body && r.chance(0.5) ? `Transfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n` : `Content-Length: ${body.length}\r\n\r\n${body}`;
  return `${method} ${path} HTTP/1.1\r\nHost: relay.example.com\r\nX-Case: ${r.int(1e9)}\r\n${framing}`;
}

function randomRequest(r: Rng): string {
  if (r.chance(0.6)) return plainRequest(r);
  const head = randomHeaders(r);
  const body = randomBody(r, head.some((l) => /^transfer-encoding: chunked$/i.test(l)));
  const version = r.chance(0.9) ? "HTTP/1.1" : r.pick(["HTTP/1.0", "HTTP/1.2", "HTTP/2.0", "HTTP/x", ""]);
  const target = r.chance(0.8) ? r.pick(TARGETS) : randomPath(r);
  return `${r.pick(METHODS)} ${target} ${version}\r\n${head.join("\r\n")}\r\n\r\n${body}`;
}

/** A few byte-level mutations: flips, inserts, deletions, duplicated ranges, stray line ends, truncation. */
function mutate(r: Rng, input: Buffer): Buffer {
  let b = input;
  for (let n = 1 + r.int(3); n > 0; n--) {
    const at = r.int(b.length + 1);
    switch (r.int(6)) {
      case 0:
        if (b.length) b = Buffer.concat([b.subarray(0, at), Buffer.from([r.int(256)]), b.subarray(Math.min(b.length, at + 1))]);
        break;
      case 1:
        b = Buffer.concat([b.subarray(0, at), Buffer.from(r.bytes(1 + r.int(4))), b.subarray(at)]);
        break;
      case 2:
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + r.int(8)))]);
        break;
      case 3:
        b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + r.int(30)), b.subarray(at)]);
        break;
      case 4:
        b = Buffer.concat([b.subarray(0, at), Buffer.from(r.pick(["\r\n", "\n", "\r", "\r\n\r\n"])), b.subarray(at)]);
        break;
      default:
        b = b.subarray(0, at);
    }
  }
  return b;
}

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
function heapUsed(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

let relay: TestRelay;
let target: TestTarget;
let connector: Connector;

beforeAll(async () => {
  target = await startTestTarget();
  relay = await startTestRelay({ limits: { headersTimeoutMs: 300, idleTimeoutMs: 1000 } });
  connector = await startTestConnector(relay.url, await relay.tenantWithKey("acme"), { app: target.url }, { tunnels: 1 });
});

afterAll(async () => {
  await connector?.stop();
  await relay?.close();
  await target?.close();
});

describe(`gateway parsing, raw HTTP/1.1 against a live relay (FUZZ_SEED=${SEED})`, () => {
  it(`answers ${RAW_CASES} random and mutated requests with well-formed responses or a close, in bounded memory`, async () => {
    const r = rng(SEED ^ 0x9e3779b9);
    const thrown: unknown[] = [];
    const onThrow = (err: unknown) => thrown.push(err);
    process.on("uncaughtException", onThrow);
    process.on("unhandledRejection", onThrow);
    try {
      // Warm up (code paths, pools), then the baseline.
      for (let i = 0; i < 20; i++) await request(`${relay.url}/relay/acme/app/echo`, { method: "POST", body: "warm" });
      const before = heapUsed();
      const reachedBefore = target.seen.length;
      const cases = Array.from({ length: RAW_CASES }, () => {
        const requests = Array.from({ length: r.chance(0.2) ? 2 + r.int(2) : 1 }, () => Buffer.from(randomRequest(r), "latin1"));
        const bytes = Buffer.concat(requests);
        return r.chance(0.4) ? mutate(r, bytes) : bytes;
      });
      let next = 0;
      const problems: string[] = [];
      const worker = async () => {
        while (next < cases.length) {
          const i = next++;
          const peer = await rawPeer(relay.url);
          peer.socket.end(cases[i]!);
          const { bytes } = await within(peer.closed, 15_000, `case ${i}: ${JSON.stringify(cases[i]!.toString("latin1").slice(0, 200))}`);
          const problem = problemWith(bytes);
          if (problem) problems.push(`case ${i}: ${problem}\n  sent ${JSON.stringify(cases[i]!.toString("latin1").slice(0, 300))}\n  got ${JSON.stringify(bytes.toString("latin1").slice(0, 300))}`);
        }
      };
      await Promise.all(Array.from({ length: PARALLEL }, worker));
      expect(problems.slice(0, 5)).toEqual([]);
      // Not all refused at the door: a good part of the cases went all the way to the target.
      expect(target.seen.length - reachedBefore).toBeGreaterThan(RAW_CASES / 5);
      // Still serving, nothing left in progress, and memory back near where it was.
      const ok = await request(`${relay.url}/relay/acme/app/echo`, { method: "POST", body: "after the fuzz" });
      expect(ok.body.toString()).toBe("after the fuzz");
      expect((await relay.relay.metrics.render()).match(/ferry_exchanges_in_flight\{tenant="acme"\} (\d+)/)?.[1] ?? "0").toBe("0");
      expect(heapUsed() - before).toBeLessThan(32 * 1024 * 1024);
      // Every fault label is one of ours: a peer cannot grow the metrics.
      expect(relay.relay.faults.faults().size).toBeLessThan(32);
    } finally {
      process.off("uncaughtException", onThrow);
      process.off("unhandledRejection", onThrow);
    }
    expect(thrown).toEqual([]);
  });
});
