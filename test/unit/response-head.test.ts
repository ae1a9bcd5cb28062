import { describe, expect, it } from "vitest";
import type { Header, ResponseHead } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { header } from "../../core/headers.js";
import { BadResponse, frameResponse } from "../../services/gateway/response-head.js";
import { clientTrailers } from "../../services/gateway/trailers.js";

const head = (status: number, headers: Array<[string, string]> = [], endStream = false): ResponseHead => ({
  $typeName: "ferry.tunnel.v1.ResponseHead",
  status,
  headers: headers.map(([n, v]) => header(n, v)),
  endStream,
});
const GET = { method: "GET", upgrade: false };
const pairs = (headers: Header[]) => headers.map((h) => [h.name, h.value]);

function reason(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(BadResponse);
    expect((err as BadResponse).code).toBe("bad_response");
    return (err as BadResponse).reason;
  }
}

describe("frameResponse: status", () => {
  it.each([200, 201, 204, 299, 301, 404, 500, 599])("passes %i", (status) => {
    expect(frameResponse(head(status), GET).status).toBe(status);
  });

  it.each([0, 1, 99, 100, 101, 102, 103, 199, 600, 999, 1000, 4_294_967_295])("refuses %i as a final status", (status) => {
    expect(reason(() => frameResponse(head(status), GET))).toBe("bad_status");
  });

  it("takes 101 only as the answer to an upgrade", () => {
    expect(frameResponse(head(101, [["upgrade", "websocket"], ["connection", "upgrade"]]), { method: "GET", upgrade: true })).toMatchObject({
      status: 101,
      headers: [header("upgrade", "websocket"), header("connection", "upgrade")],
    });
    expect(reason(() => frameResponse(head(100), { method: "GET", upgrade: true }))).toBe("bad_status");
  });
});

describe("frameResponse: headers", () => {
  it.each([
    ["a space in a name", "bad name", "x"],
    ["a pseudo-header", ":status", "200"],
    ["an empty name", "", "x"],
    ["a colon in a name", "a:b", "x"],
    ["a non-ASCII name", "x-é", "x"],
    ["CR LF in a value", "x-a", "1\r\nset-cookie: a=b"],
    ["a bare LF in a value", "x-a", "1\nx"],
    ["NUL in a value", "x-a", "a\u0000"],
    ["DEL in a value", "x-a", "a\u007f"],
    ["a character above U+00FF", "x-a", "\u0100"],
  ])("refuses %s", (_what, name, value) => {
    expect(reason(() => frameResponse(head(200, [[name, value]]), GET))).toBe("bad_response_header");
  });

  it("drops hop-by-hop fields (Transfer-Encoding too: the relay frames the body), the target's X-Request-Id and Alt-Svc", () => {
    const framed = frameResponse(
      head(200, [["Connection", "close, x-hop"], ["x-hop", "1"], ["Transfer-Encoding", "chunked"], ["Keep-Alive", "5"], ["X-Request-Id", "t"], ["Alt-Svc", 'h3=":443"'], ["X-Kept", "k"]]),
      GET,
    );
    expect(pairs(framed.headers)).toEqual([["x-kept", "k"]]);
  });

  it("keeps the first of repeated single-value fields, every value of list fields and each Set-Cookie", () => {
    const framed = frameResponse(
      head(200, [["content-type", "a/b"], ["set-cookie", "a=1"], ["location", "/1"], ["content-type", "c/d"], ["set-cookie", "b=2"], ["location", "/2"], ["vary", "x"], ["vary", "y"]]),
      GET,
    );
    expect(pairs(framed.headers)).toEqual([
      ["content-type", "a/b"],
      ["set-cookie", "a=1"],
      ["location", "/1"],
      ["set-cookie", "b=2"],
      ["vary", "x"],
      ["vary", "y"],
    ]);
  });

  it("accepts latin1 values and tabs (what Node writes)", () => {
    expect(pairs(frameResponse(head(200, [["x-a", "caf\u00e9\tok"]]), GET).headers)).toEqual([["x-a", "caf\u00e9\tok"]]);
  });
});

describe("frameResponse: content-length and bodies", () => {
  it.each([
    ["repeated", [["content-length", "4"], ["content-length", "4"]]],
    ["a list", [["content-length", "4, 4"]]],
    ["signed", [["content-length", "+4"]]],
    ["negative", [["content-length", "-4"]]],
    ["a fraction", [["content-length", "4.0"]]],
    ["hexadecimal", [["content-length", "0x4"]]],
    ["padded", [["content-length", " 4"]]],
    ["16 digits", [["content-length", "1234567890123456"]]],
    ["empty", [["content-length", ""]]],
  ] as Array<[string, Array<[string, string]>]>)("refuses a %s Content-Length", (_what, headers) => {
    expect(reason(() => frameResponse(head(200, headers), GET))).toBe("bad_content_length");
  });

  it("takes one valid Content-Length as the body's exact length", () => {
    expect(frameResponse(head(200, [["content-length", "0004"]]), GET)).toMatchObject({ length: 4, bodiless: false });
    expect(frameResponse(head(200), GET)).toMatchObject({ length: undefined, bodiless: false });
  });

  it.each([
    ["HEAD", 200],
    ["GET", 204],
    ["GET", 304],
  ] as Array<[string, number]>)("%s answered %i has no body", (method, status) => {
    const framed = frameResponse(head(status, [["content-length", "10"]]), { method, upgrade: false });
    expect(framed).toMatchObject({ bodiless: true, length: undefined });
    // A 204 has no Content-Length at all; a HEAD's and a 304's describe the GET's body.
    expect(framed.headers.some((h) => h.name === "content-length")).toBe(status !== 204);
  });

  it("refuses a head that ends the response but declares a body", () => {
    expect(reason(() => frameResponse(head(200, [["content-length", "5"]], true), GET))).toBe("body_shorter_than_content_length");
    expect(frameResponse(head(200, [["content-length", "0"]], true), GET).length).toBe(0);
    expect(frameResponse(head(200, [["content-length", "5"]], true), { method: "HEAD", upgrade: false }).bodiless).toBe(true);
  });
});

describe("clientTrailers", () => {
  const trailers = (list: Array<[string, string]>) => list.map(([n, v]) => header(n, v));

  it("keeps ordinary trailers (gRPC's included) and reports nothing", () => {
    let invalid = 0;
    const out = clientTrailers(trailers([["grpc-status", "0"], ["grpc-message", "ok"], ["x-checksum", "1"]]), () => invalid++);
    expect(pairs(out)).toEqual([["grpc-status", "0"], ["grpc-message", "ok"], ["x-checksum", "1"]]);
    expect(invalid).toBe(0);
  });

  it("drops what Node cannot write and reports it once", () => {
    let invalid = 0;
    const out = clientTrailers(
      trailers([["bad name", "x"], [":status", "200"], ["x-a", "1\r\n2"], ["x-b", "\u0000"], ["x-ok", "y"]]),
      () => invalid++,
    );
    expect(pairs(out)).toEqual([["x-ok", "y"]]);
    expect(invalid).toBe(1);
  });

  it("drops fields that cannot be trailers, hop-by-hop ones and Ferry's own", () => {
    const names = ["content-length", "transfer-encoding", "content-type", "set-cookie", "location", "host", "authorization", "te", "connection", "x-ferry-x", "trailer"];
    const out = clientTrailers(trailers([...names.map((n) => [n, "v"] as [string, string]), ["x-ok", "y"]]), () => {});
    expect(pairs(out)).toEqual([["x-ok", "y"]]);
  });

  it("keeps the first of a repeated single-value trailer (HTTP/2 cannot carry two) and every value of others", () => {
    const out = clientTrailers(trailers([["etag", '"1"'], ["x-list", "a"], ["etag", '"2"'], ["x-list", "b"]]), () => {});
    expect(pairs(out)).toEqual([["etag", '"1"'], ["x-list", "a"], ["x-list", "b"]]);
  });
});
