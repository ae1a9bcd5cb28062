import { describe, expect, it } from "vitest";
import { FerryError } from "../../core/errors.js";
import { encodePathSegment, parseRelayPath } from "../../services/gateway/relay-path.js";

function badPath(url: string): FerryError {
  try {
    parseRelayPath(url);
  } catch (e) {
    expect(e).toBeInstanceOf(FerryError);
    const err = e as FerryError;
    expect(err.kind).toBe("invalid_argument");
    expect(err.code).toBe("bad_path");
    return err;
  }
  throw new Error(`expected ${url} to be refused`);
}

const pathOf = (url: string) => parseRelayPath(url).path;

describe("parseRelayPath", () => {
  it("splits tenant, target, path, query and prefix", () => {
    expect(parseRelayPath("/relay/acme/web/api/v1/items?limit=10&x=%2F")).toEqual({
      tenant: "acme",
      target: "web",
      path: "/api/v1/items",
      query: "limit=10&x=%2F",
      prefix: "/relay/acme/web",
    });
  });

  it("uses '/' when there is no path below the target", () => {
    expect(parseRelayPath("/relay/t/x")).toMatchObject({ path: "/", query: "" });
    expect(parseRelayPath("/relay/t/x/")).toMatchObject({ path: "/" });
    expect(parseRelayPath("/relay/t/x?q=1")).toMatchObject({ path: "/", query: "q=1" });
  });

  it("keeps a trailing slash and empty segments", () => {
    expect(pathOf("/relay/t/x/a/b/")).toBe("/a/b/");
    expect(pathOf("/relay/t/x/a//b")).toBe("/a//b");
  });

  it("passes the query through raw, including an empty one after '?'", () => {
    expect(parseRelayPath("/relay/t/x/p?a=%zz&b=../..&c=%2f").query).toBe("a=%zz&b=../..&c=%2f");
    expect(parseRelayPath("/relay/t/x/p?").query).toBe("");
  });

  it.each([
    ["/relay/t/x/a/./b", "/a/b"],
    ["/relay/t/x/a/.", "/a/"],
    ["/relay/t/x/.", "/"],
    ["/relay/t/x/a/b/../c", "/a/c"],
    ["/relay/t/x/a/b/..", "/a/"],
    ["/relay/t/x/a/..", "/"],
    ["/relay/t/x/a/%2e%2e/b", "/b"],
    ["/relay/t/x/a/%2E/b", "/a/b"],
    ["/relay/t/x/a/.%2e", "/"],
  ])("resolves dot segments: %s -> %s", (url, path) => {
    expect(pathOf(url)).toBe(path);
  });

  it.each(["/relay/t/x/..", "/relay/t/x/../y", "/relay/t/x/a/../..", "/relay/t/x/%2e%2e", "/relay/t/x/a/../../b"])(
    "refuses '..' that climbs out of the target: %s",
    (url) => {
      expect(badPath(url).message).toMatch(/climbs out/);
    },
  );

  it.each(["/relay/t/x/a%2fb", "/relay/t/x/a%2Fb", "/relay/t/x/a%5cb", "/relay/t/x/a%5Cb", "/relay/t/x/a%00b", "/relay/t/x/a\\b", "/relay/t\\x/y"])(
    "refuses encoded '/', '\\', NUL and raw '\\': %s",
    (url) => {
      badPath(url);
    },
  );

  it.each(["/relay/t/x/%", "/relay/t/x/%zz", "/relay/t/x/a%2", "/relay/t/x/%e0%a4%a", "/relay/t/x/%c3%28"])(
    "refuses malformed percent-encoding: %s",
    (url) => {
      expect(badPath(url).message).toMatch(/percent-encoding/);
    },
  );

  it.each([
    ["/relay/Acme/x/p", "tenant"],
    ["/relay//x/p", "tenant"],
    [`/relay/${"a".repeat(64)}/x/p`, "tenant"],
    ["/relay/-acme/x/p", "tenant"],
    ["/relay/acme-/x/p", "tenant"],
    ["/relay/a_b/x/p", "tenant"],
    ["/relay/%61cme/x/p", "tenant"],
    ["/relay/t/X/p", "target"],
    ["/relay/t//p", "target"],
    ["/relay/t", "target"],
    ["/relay/t/", "target"],
    [`/relay/t/${"b".repeat(64)}`, "target"],
    ["/relay/t/-x/p", "target"],
  ])("refuses bad tenant or target names: %s", (url, which) => {
    expect(badPath(url).message).toContain(`is not a ${which} name`);
  });

  it("accepts 63-character names", () => {
    const name = "a".repeat(63);
    expect(parseRelayPath(`/relay/${name}/${name}/`)).toMatchObject({ tenant: name, target: name });
  });

  it.each(["/relai/t/x", "relay/t/x", "/Relay/t/x", "http://host/relay/t/x", ""])("refuses paths outside /relay/: %s", (url) => {
    badPath(url);
  });

  it.each([
    ["/relay/t/x/%41%42c", "/ABc"],
    ["/relay/t/x/a%20b", "/a%20b"],
    ["/relay/t/x/%40%3a%3A@:", "/@::@:"],
    ["/relay/t/x/%24%26%2b%2c%3b%3d", "/$&+,;="],
    ["/relay/t/x/%252e%252e", "/%252e%252e"],
    ["/relay/t/x/%252f", "/%252f"],
    ["/relay/t/x/%25", "/%25"],
    ["/relay/t/x/%7e%2d%5f", "/~-_"],
    ["/relay/t/x/%c3%a9", "/%C3%A9"],
    ["/relay/t/x/%3f%23", "/%3F%23"],
    ["/relay/t/x/a%0ab", "/a%0Ab"],
  ])("re-encodes the path canonically after exactly one decode: %s -> %s", (url, path) => {
    expect(pathOf(url)).toBe(path);
  });

  it("re-encoding is idempotent", () => {
    const once = pathOf("/relay/t/x/%41 b/%c3%a9/%252e/@:/$");
    expect(pathOf(`/relay/t/x${once}`)).toBe(once);
  });
});

describe("encodePathSegment", () => {
  it("keeps sub-delims, ':' and '@', and encodes the rest", () => {
    expect(encodePathSegment("a b/c?d#e%f")).toBe("a%20b%2Fc%3Fd%23e%25f");
    expect(encodePathSegment("!$&'()*+,;=:@")).toBe("!$&'()*+,;=:@");
  });
});
