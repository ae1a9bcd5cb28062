import { describe, expect, it } from "vitest";
import { matchRule, pathUnder } from "../../services/access/rule-match.js";

const rules = [
  { name: "public docs", targets: ["crm"], paths: ["/docs/"] },
  { name: "crm api", targets: ["crm", "erp"], paths: ["/api", "/v2/"] },
  { name: "erp", targets: ["erp"], paths: [] },
  { name: "the rest", targets: ["*"], paths: [] },
];

describe("rule matching", () => {
  it.each([
    ["crm", "/docs/intro", "public docs"],
    ["crm", "/docs/", "public docs"],
    ["crm", "/docs", "the rest"], // "/docs/" is a folder: /docs itself is not in it
    ["crm", "/api", "crm api"],
    ["crm", "/api/orders", "crm api"],
    ["crm", "/apix", "the rest"], // segment-aware: /api is not a prefix of /apix
    ["crm", "/api%2Fx", "the rest"],
    ["crm", "/v2/x", "crm api"],
    ["crm", "/v2", "the rest"],
    ["erp", "/api/x", "crm api"], // first match wins, though "erp" would take it too
    ["erp", "/other", "erp"],
    ["wiki", "/", "the rest"],
  ])("%s %s -> %s", (target, path, want) => {
    expect(matchRule(rules, target, path)?.name).toBe(want);
  });

  it("matches nothing when no rule names the target (the target is public)", () => {
    expect(matchRule(rules.slice(0, 3), "wiki", "/api")).toBeUndefined();
    expect(matchRule([], "crm", "/")).toBeUndefined();
  });

  it.each([
    ["/", "/", true],
    ["/anything", "/", true],
    ["/api", "/api", true],
    ["/api/", "/api", true],
    ["/api/x/y", "/api", true],
    ["/apix", "/api", false],
    ["/ap", "/api", false],
    ["/api", "/api/", false],
    ["/api/", "/api/", true],
    ["/API/x", "/api", false], // paths are case-sensitive, as HTTP says
  ])("pathUnder(%s, %s) = %s", (path, prefix, want) => {
    expect(pathUnder(path, prefix)).toBe(want);
  });
});
