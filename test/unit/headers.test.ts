import { describe, expect, it } from "vitest";
import type { Header } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { endToEndHeaders, firstOfSingleValue, header, headersFromObject, isFieldName, isFieldValue, toFlatList, toNodeHeaders } from "../../core/headers.js";

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

describe("header maps of peer-supplied names", () => {
  it("toNodeHeaders keeps __proto__, constructor and the like as ordinary names", () => {
    const out = toNodeHeaders([header("__proto__", "a"), header("constructor", "b"), header("toString", "c"), header("constructor", "d")]);
    expect(Object.getPrototypeOf(out)).toBeNull();
    expect(Object.keys(out)).toEqual(["__proto__", "constructor", "toString"]);
    expect(out.constructor).toEqual(["b", "d"]);
    expect(Object.getOwnPropertyDescriptor(out, "__proto__")?.value).toBe("a");
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("headersFromObject reads a __proto__ field of a prototype-less object", () => {
    const obj = Object.create(null) as Record<string, string>;
    obj["__proto__"] = "a";
    obj["constructor"] = "b";
    expect(pairs(headersFromObject(obj))).toEqual([
      ["__proto__", "a"],
      ["constructor", "b"],
    ]);
  });
});

describe("field syntax", () => {
  it.each(["x-a", "Content-Type", "!#$%&'*+-.^_`|~09AZaz", "__proto__"])("%s is a field name", (name) => {
    expect(isFieldName(name)).toBe(true);
  });

  it.each(["", "a b", "a:b", ":status", "a\r\n", "é", "a(b)", "a/b", "a\u0000"])("%j is not a field name", (name) => {
    expect(isFieldName(name)).toBe(false);
  });

  it.each(["", "text/html; charset=utf-8", "a\tb", "caf\u00e9", "\u00ff"])("%j is a field value", (value) => {
    expect(isFieldValue(value)).toBe(true);
  });

  it.each(["a\r\nb", "a\nb", "a\rb", "a\u0000b", "a\u007fb", "\u0100", "\u2028"])("%j is not a field value", (value) => {
    expect(isFieldValue(value)).toBe(false);
  });
});

describe("firstOfSingleValue", () => {
  it("keeps the first of each repeated single-value field and every list field", () => {
    const list = [header("content-type", "a"), header("vary", "x"), header("content-type", "b"), header("vary", "y"), header("location", "/1"), header("location", "/2")];
    expect(pairs(firstOfSingleValue(list))).toEqual([
      ["content-type", "a"],
      ["vary", "x"],
      ["vary", "y"],
      ["location", "/1"],
    ]);
  });

  it("returns the same list when nothing repeats", () => {
    const list = [header("content-type", "a"), header("set-cookie", "a=1"), header("set-cookie", "b=2")];
    expect(firstOfSingleValue(list)).toBe(list);
  });
});
