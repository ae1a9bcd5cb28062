import { describe, expect, it } from "vitest";
import { mintSecret, sameSecret, secretId, secretMatches, sha256 } from "../../services/auth/secrets.js";

describe("mintSecret", () => {
  it.each(["fck", "fat"] as const)("mints %s_<16-char id>_<43-char base64url secret>", (kind) => {
    const m = mintSecret(kind);
    expect(m.id).toMatch(/^[a-z0-9]{16}$/);
    expect(m.secret).toMatch(new RegExp(`^${kind}_${m.id}_[A-Za-z0-9_-]{43}$`));
    expect(Buffer.from(m.sha256).equals(Buffer.from(sha256(m.secret)))).toBe(true);
    expect(m.sha256.byteLength).toBe(32);
  });

  it("mints a different id and secret each time", () => {
    const minted = Array.from({ length: 50 }, () => mintSecret("fck"));
    expect(new Set(minted.map((m) => m.id)).size).toBe(50);
    expect(new Set(minted.map((m) => m.secret)).size).toBe(50);
  });
});

describe("secretId", () => {
  it("extracts the id, even when the random part contains '_'", () => {
    let sawUnderscore = false;
    for (let i = 0; i < 300; i++) {
      const m = mintSecret("fck");
      if (m.secret.slice(21).includes("_")) sawUnderscore = true;
      expect(secretId("fck", m.secret)).toBe(m.id);
    }
    expect(sawUnderscore).toBe(true); // 300 secrets of 43 base64url chars: P(no '_') is about 1e-88
  });

  it("rejects a secret of another kind", () => {
    const m = mintSecret("fat");
    expect(secretId("fck", m.secret)).toBeUndefined();
    expect(secretId("fat", m.secret)).toBe(m.id);
  });

  it.each([
    "",
    "fck",
    "fck_0123456789abcdef",
    "fck__abc",
    "fck_0123456789ABCDEF_abc",
    "fck_0123456789abcde_abc",
    "fck_0123456789abcdef0_abc",
    "FCK_0123456789abcdef_abc",
    "xfck_0123456789abcdef_abc",
  ])("rejects the malformed %j", (secret) => {
    expect(secretId("fck", secret)).toBeUndefined();
  });

  it("accepts the minimal well-formed shape", () => {
    expect(secretId("fck", "fck_0123456789abcdef_x")).toBe("0123456789abcdef");
  });
});

describe("secretMatches", () => {
  it("is true for the secret the digest came from", () => {
    const m = mintSecret("fck");
    expect(secretMatches(m.secret, m.sha256)).toBe(true);
  });

  it("is false for a different secret, including one differing in a single character", () => {
    const m = mintSecret("fck");
    expect(secretMatches(mintSecret("fck").secret, m.sha256)).toBe(false);
    const last = m.secret.at(-1) === "A" ? "B" : "A";
    expect(secretMatches(m.secret.slice(0, -1) + last, m.sha256)).toBe(false);
    expect(secretMatches("", m.sha256)).toBe(false);
  });

  it("is false, without throwing, for a digest of another length", () => {
    const m = mintSecret("fck");
    expect(() => secretMatches(m.secret, m.sha256.subarray(0, 16))).not.toThrow();
    expect(secretMatches(m.secret, m.sha256.subarray(0, 16))).toBe(false);
    expect(secretMatches(m.secret, new Uint8Array(0))).toBe(false);
    expect(secretMatches(m.secret, new Uint8Array([...m.sha256, 0]))).toBe(false);
  });
});

describe("sameSecret", () => {
  it("is true only for the same string", () => {
    const { secret } = mintSecret("fcl");
    expect(sameSecret(secret, `${secret}`)).toBe(true);
    expect(sameSecret(secret, secret.slice(0, -1) + (secret.endsWith("A") ? "B" : "A"))).toBe(false);
    expect(sameSecret(secret, `B${secret.slice(1)}`)).toBe(false);
    expect(sameSecret(secret, secret.slice(0, -1))).toBe(false);
    expect(sameSecret("", "")).toBe(true);
    expect(sameSecret("a", "")).toBe(false);
  });
});
