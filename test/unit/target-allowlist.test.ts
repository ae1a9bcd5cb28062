import { describe, expect, it } from "vitest";
import { allowlistProblem, pathUnder } from "../../clients/connector/target-allowlist.js";

describe("pathUnder", () => {
  it.each([
    ["/rest/", "/rest/", true],
    ["/rest/", "/rest/users?x", true],
    ["/rest/", "/rest/a/b", true],
    ["/rest/", "/restricted", false],
    ["/rest/", "/rest", false],
    ["/rest/", "/Rest/x", false],
    ["/rest", "/rest", true],
    ["/rest", "/rest/x", true],
    ["/rest", "/restx", false],
    ["/rest", "/restricted/x", false],
    ["/rest", "/", false],
    ["/", "/anything", true],
    ["/a/b", "/a/b/c", true],
    ["/a/b", "/a/bc", false],
    ["/rest/", "/%72est/x", false],
  ])("prefix %s, path %s -> %s", (prefix, path, expected) => {
    expect(pathUnder(path, prefix)).toBe(expected);
  });
});

describe("allowlistProblem", () => {
  const target = { allowedPaths: ["/auth/", "/rest"], allowedMethods: ["GET", "POST"] };

  it("lets through what both lists allow", () => {
    expect(allowlistProblem(target, "GET", "/rest/users")).toBeUndefined();
    expect(allowlistProblem(target, "post", "/auth/login")).toBeUndefined();
  });

  it("refuses a method outside the list, even on an allowed path", () => {
    expect(allowlistProblem(target, "DELETE", "/rest/users")).toMatch(/method DELETE/);
    expect(allowlistProblem(target, "OPTIONS", "/rest/users")).toMatch(/method OPTIONS/);
  });

  it("judges a method override header (what frameworks run a POST as) by the same list", () => {
    const h = (name: string, value: string) => [{ $typeName: "ferry.tunnel.v1.Header" as const, name, value }];
    expect(allowlistProblem(target, "POST", "/rest/users", h("X-HTTP-Method-Override", "DELETE"))).toBe(
      "method DELETE (from x-http-method-override) is not allowed on this target",
    );
    expect(allowlistProblem(target, "POST", "/rest/users", h("x-http-method", "put"))).toMatch(/method put \(from x-http-method\)/);
    expect(allowlistProblem(target, "POST", "/rest/users", h("x-method-override", "PATCH"))).toMatch(/PATCH/);
    expect(allowlistProblem(target, "POST", "/rest/users", h("x-http-method-override", "get"))).toBeUndefined();
    // Without a method list, overrides are the application's business.
    expect(allowlistProblem({ allowedPaths: [], allowedMethods: [] }, "POST", "/x", h("x-http-method-override", "DELETE"))).toBeUndefined();
  });

  it("refuses a path outside the list", () => {
    expect(allowlistProblem(target, "GET", "/admin")).toMatch(/path \/admin/);
    expect(allowlistProblem(target, "GET", "/authority")).toMatch(/path/);
  });

  it("allows everything when both lists are empty", () => {
    expect(allowlistProblem({ allowedPaths: [], allowedMethods: [] }, "PATCH", "/x")).toBeUndefined();
  });
});
