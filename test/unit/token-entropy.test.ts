import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { mintSecret } from "../../services/auth/secrets.js";
import { estimateTokenBits, MIN_TOKEN_BITS, weakTokenReason } from "../../services/auth/token-entropy.js";
import { Catalog } from "../../services/state/catalog.js";
import { openFileStore } from "../../services/state/file-store.js";
import { ADMIN_TOKEN, tempDir } from "../helpers/processes.js";

// Finding 13: FERRY_ADMIN_TOKEN=aaaaaaaaaaaaaaaa was accepted.
describe("bootstrap token strength", () => {
  it("accepts what the docs tell operators to use, every time", () => {
    const forms: Record<string, () => string> = {
      "openssl rand -hex 24": () => randomBytes(24).toString("hex"),
      "openssl rand -hex 16": () => randomBytes(16).toString("hex"),
      "openssl rand -base64 32": () => randomBytes(32).toString("base64"),
      "a minted fat_ token": () => mintSecret("fat").secret,
    };
    for (const [form, make] of Object.entries(forms)) {
      for (let i = 0; i < 2000; i++) {
        const token = make();
        expect(weakTokenReason(token), `${form}: ${token}`).toBeUndefined();
      }
    }
  });

  it("refuses short, repeated and patterned strings, and says how to make a good one", () => {
    for (const weak of [
      "aaaaaaaaaaaaaaaa",
      "a".repeat(64),
      "abababababababababababababababab",
      "0123456789012345678901234567890123456789",
      "abcdefghijklmnopqrstuvwxyz0123456789",
      "passwordpasswordpasswordpassword",
      "Xk9#mP2$vL5@nQ8!", // random-looking, but 16 characters
      randomBytes(8).toString("hex"),
    ]) {
      expect(weakTokenReason(weak), weak).toMatch(/openssl rand -hex 24/);
    }
    expect(estimateTokenBits("aaaaaaaaaaaaaaaa")).toBe(0);
    expect(estimateTokenBits("1234567812345678123456781234567812345678")).toBeLessThan(MIN_TOKEN_BITS / 2);
  });

  it("is enforced when the relay takes FERRY_ADMIN_TOKEN", async () => {
    const store = await openFileStore(tempDir());
    try {
      const catalog = new Catalog(store);
      await expect(catalog.bootstrapAdmin("aaaaaaaaaaaaaaaa")).rejects.toMatchObject({
        kind: "invalid_argument",
        code: "weak_admin_token",
        message: expect.stringMatching(/^FERRY_ADMIN_TOKEN is too weak \(16 characters, about 0 bits.*openssl rand -hex 24/),
      });
      expect(catalog.checkAdminToken("aaaaaaaaaaaaaaaa")).toBeUndefined();
      const good = randomBytes(24).toString("hex");
      await catalog.bootstrapAdmin(good);
      expect(catalog.checkAdminToken(good)?.role).toBe("admin");
      // The test suite's token passes (no dictionary: words are not recognised).
      await catalog.bootstrapAdmin(ADMIN_TOKEN);
    } finally {
      await store.close();
    }
  });
});
