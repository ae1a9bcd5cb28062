import { describe, expect, it } from "vitest";
import { pathProblem } from "../../clients/connector/target-forwarder.js";

// The connector's own check of relay-supplied paths, before they are appended to a target's base path.
describe("pathProblem", () => {
  it.each(["/", "/a/b", "/a//b", "//a", "/a%20b/c", "/%252e%252e/x", "/@:!$&'()*+,;=", "/a/.hidden", "/a/...", "/a/b..c"])(
    "accepts %s",
    (path) => expect(pathProblem(path)).toBeUndefined(),
  );

  it.each([
    ["a/b", "it does not start with '/'"],
    ["", "it does not start with '/'"],
    ["/../admin", "it contains a dot segment"],
    ["/a/..", "it contains a dot segment"],
    ["/a/./b", "it contains a dot segment"],
    ["/%2e%2e/admin", "it contains a dot segment"],
    ["/..;/admin", "it contains a dot segment"],
    ["/.;x/admin", "it contains a dot segment"],
    ["/a%2fb", "it contains an encoded '/', '\\' or NUL, or a '\\'"],
    ["/a%5Cb", "it contains an encoded '/', '\\' or NUL, or a '\\'"],
    ["/a%00", "it contains an encoded '/', '\\' or NUL, or a '\\'"],
    ["/a\\b", "it contains an encoded '/', '\\' or NUL, or a '\\'"],
    ["/%zz", "it has malformed percent-encoding"],
  ])("refuses %j: %s", (path, problem) => expect(pathProblem(path)).toBe(problem));
});
