import { describe, expect, it } from "vitest";
import { expiredCredential } from "../../services/tunnel/credential-expiry.js";

const now = Date.parse("2026-11-23T12:00:00Z");

describe("expiredCredential", () => {
  it("holds while the key and the certificate are valid", () => {
    expect(expiredCredential({}, undefined, now)).toBeUndefined();
    expect(expiredCredential({ certificateExpires: new Date(now + 1) }, now + 1, now)).toBeUndefined();
  });

  it("ends a tunnel at its key's expire time", () => {
    expect(expiredCredential({}, now, now)).toBe("connector key has expired (it was rotated)");
  });

  it("ends a tunnel at its client certificate's notAfter, even with a valid key", () => {
    expect(expiredCredential({ certificateExpires: new Date(now - 1000) }, now + 3_600_000, now)).toBe("connector certificate has expired");
  });
});
