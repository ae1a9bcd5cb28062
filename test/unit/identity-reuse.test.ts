import { describe, expect, it } from "vitest";
import type { AccessGranted } from "../../services/access/access-control.js";
import type { IdentityClaims } from "../../services/identity/identity-claims.js";
import { createIdentityIssuer } from "../../services/identity/identity-reuse.js";

// An ES256 signature per request is most of what a policy costs: the same client gets the same identity again while
// it has half its life left, and nobody else ever gets it.

function setup(max?: number) {
  let nowMs = 1_800_000_000_000;
  const signed: IdentityClaims[] = [];
  const issuer = createIdentityIssuer({ sign: (c) => (signed.push(c), `token-${signed.length}`) }, { now: () => nowMs, ...(max ? { max } : {}) });
  return { issuer, signed, advance: (ms: number) => (nowMs += ms) };
}
const grant = (over: Partial<AccessGranted> = {}): AccessGranted => ({ allowed: true, rule: "crm", method: "apiKey", subject: "key1", consumedHeaders: [], ...over });
const facts = { tenant: "acme", target: "crm", clientAddress: "203.0.113.7" };

describe("identity reuse", () => {
  it("gives the same client the same identity while half its life is left, then a new one", () => {
    const { issuer, signed, advance } = setup();
    expect(issuer.issue(grant(), facts)).toBe("token-1");
    advance(29_000);
    expect(issuer.issue(grant(), facts)).toBe("token-1");
    advance(2_000); // 31 s after signing: under 30 s left
    expect(issuer.issue(grant(), facts)).toBe("token-2");
    expect(signed).toHaveLength(2);
    expect(signed[1]!.exp - signed[1]!.iat).toBe(60);
  });

  it.each([
    ["another subject", grant({ subject: "key2" }), facts],
    ["another method", grant({ method: "jwt" }), facts],
    ["another rule", grant({ rule: "other" }), facts],
    ["no rule", grant({ rule: undefined }), facts],
    ["another target", grant(), { ...facts, target: "erp" }],
    ["another tenant", grant(), { ...facts, tenant: "beta" }],
    ["another address", grant(), { ...facts, clientAddress: "203.0.113.8" }],
  ])("never hands it to %s", (_what, g, f) => {
    const { issuer, signed } = setup();
    issuer.issue(grant(), facts);
    expect(issuer.issue(g, f)).toBe("token-2");
    expect(signed[1]).toMatchObject({ sub: g.subject, auth: g.method, tenant: f.tenant, target: f.target, client_address: f.clientAddress });
  });

  it("keeps at most `max` identities, the clients heard from last", () => {
    const { issuer, signed } = setup(2);
    issuer.issue(grant({ subject: "a" }), facts);
    issuer.issue(grant({ subject: "b" }), facts);
    issuer.issue(grant({ subject: "c" }), facts); // a is dropped
    expect(issuer.issue(grant({ subject: "c" }), facts)).toBe("token-3");
    expect(issuer.issue(grant({ subject: "a" }), facts)).toBe("token-4");
    expect(signed).toHaveLength(4);
  });

  it("signs again when the signer failed before (nothing kept)", () => {
    let fail = true;
    const issuer = createIdentityIssuer({
      sign: () => {
        if (fail) throw new Error("identity_unavailable");
        return "ok";
      },
    });
    expect(() => issuer.issue(grant(), facts)).toThrow("identity_unavailable");
    fail = false;
    expect(issuer.issue(grant(), facts)).toBe("ok");
  });
});
