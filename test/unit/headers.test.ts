import { describe, expect, it } from "vitest";
import type { Header } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { endToEndHeaders, header, headersFromObject, toFlatList, toNodeHeaders } from "../../clients/sdk/headers.js";

const pairs = (headers: Header[]) => headers.map((h) => [h.name, h.value]);

describe("endToEndHeaders", () => {
  it.each([
    "Connection",
    "Keep-Alive",
    "Proxy-Connection",
    "Transfer-Encoding",
    "Upgrade",
    "Proxy-Authorization",
    "Proxy-Authenticate",
    "HTTP2-Settings",
    "Host",
    "Expect",
  ])("strips the hop-by-hop field %s", (name) => {
    const out = endToEndHeaders([name, "x", "Accept", "*/*"]);
    expect(pairs(out)).toEqual([["accept", "*/*"]]);
  });

  it("strips every field named by Connection, case-insensitively, across several Connection fields", () => {
    const out = endToEndHeaders([
      "X-Trace",
      "1",
      "connection",
      "close, X-Trace ,x-debug",
      "X-Debug",
      "on",
      "CONNECTION",
      "X-Other",
      "x-other",
      "o",
      "X-Kept",
      "k",
    ]);
    expect(pairs(out)).toEqual([["x-kept", "k"]]);
  });

  it("skips pseudo-headers and Ferry's internal x-ferry-* headers", () => {
    const out = endToEndHeaders([":path", "/x", ":authority", "h", "X-Ferry-Tenant", "evil", "x-ferry-exchange", "1", "x-ferryman", "ok"]);
    expect(pairs(out)).toEqual([["x-ferryman", "ok"]]);
  });

  it.each([
    ["trailers", [["te", "trailers"]]],
    ["Trailers", [["te", "trailers"]]],
    ["gzip, trailers", [["te", "trailers"]]],
    ["deflate", []],
    ["", []],
  ])("keeps te only as 'te: trailers' (te: %s)", (value, expected) => {
    expect(pairs(endToEndHeaders(["TE", value]))).toEqual(expected);
  });

  it("keeps repeated fields, in order, and lower-cases names without touching values", () => {
    const out = endToEndHeaders(["Set-Cookie", "a=1; Path=/", "X-A", "One", "set-cookie", "b=2", "Accept", "Text/HTML"]);
    expect(pairs(out)).toEqual([
      ["set-cookie", "a=1; Path=/"],
      ["x-a", "One"],
      ["set-cookie", "b=2"],
      ["accept", "Text/HTML"],
    ]);
  });

  it("with upgrade: true keeps Upgrade and sends Connection: upgrade", () => {
    const out = endToEndHeaders(["Connection", "Upgrade, Keep-Alive", "Upgrade", "websocket", "Keep-Alive", "timeout=5", "Sec-WebSocket-Key", "k"], {
      upgrade: true,
    });
    expect(pairs(out)).toEqual([
      ["connection", "upgrade"],
      ["upgrade", "websocket"],
      ["sec-websocket-key", "k"],
    ]);
  });

  it("without upgrade: true drops Upgrade even when Connection names it", () => {
    const out = endToEndHeaders(["Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Key", "k"]);
    expect(pairs(out)).toEqual([["sec-websocket-key", "k"]]);
  });

  it("drops the extra names given in `drop`", () => {
    const out = endToEndHeaders(["X-Forwarded-For", "6.6.6.6", "Forwarded", "for=x", "Accept", "*/*"], {
      drop: new Set(["x-forwarded-for", "forwarded"]),
    });
    expect(pairs(out)).toEqual([["accept", "*/*"]]);
  });

  it("returns an empty list for no headers", () => {
    expect(endToEndHeaders([])).toEqual([]);
  });
});

describe("headersFromObject", () => {
  it("expands arrays into repeated headers, skips undefined and filters like endToEndHeaders", () => {
    const out = headersFromObject({
      "set-cookie": ["a=1", "b=2"],
      "content-type": "text/plain",
      "x-missing": undefined,
      connection: "keep-alive, x-hop",
      "x-hop": "1",
      "transfer-encoding": "chunked",
    });
    expect(pairs(out)).toEqual([
      ["set-cookie", "a=1"],
      ["set-cookie", "b=2"],
      ["content-type", "text/plain"],
    ]);
  });

  it("passes options through", () => {
    const out = headersFromObject({ upgrade: "websocket", connection: "upgrade", "x-drop": "1" }, { upgrade: true, drop: new Set(["x-drop"]) });
    expect(pairs(out)).toEqual([
      ["upgrade", "websocket"],
      ["connection", "upgrade"],
    ]);
  });
});

describe("toNodeHeaders / toFlatList", () => {
  const list = [header("set-cookie", "a=1"), header("content-type", "text/plain"), header("set-cookie", "b=2"), header("set-cookie", "c=3")];

  it("groups repeated names into arrays and never joins set-cookie", () => {
    expect(toNodeHeaders(list)).toEqual({ "set-cookie": ["a=1", "b=2", "c=3"], "content-type": "text/plain" });
  });

  it("keeps a single value as a string", () => {
    expect(toNodeHeaders([header("x-a", "1")])).toEqual({ "x-a": "1" });
  });

  it("flattens to name, value pairs in order", () => {
    expect(toFlatList(list)).toEqual(["set-cookie", "a=1", "content-type", "text/plain", "set-cookie", "b=2", "set-cookie", "c=3"]);
  });
});
