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

  it("refuses a path outside the list", () => {
    expect(allowlistProblem(target, "GET", "/admin")).toMatch(/path \/admin/);
    expect(allowlistProblem(target, "GET", "/authority")).toMatch(/path/);
  });

  it("allows everything when both lists are empty", () => {
    expect(allowlistProblem({ allowedPaths: [], allowedMethods: [] }, "PATCH", "/x")).toBeUndefined();
  });
});
