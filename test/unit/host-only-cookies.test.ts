import { describe, expect, it } from "vitest";
import { header } from "../../core/headers.js";
import { hostOnlyCookies } from "../../services/gateway/cookie-scope.js";

// Host routing gives each app its own host, but one site: a Domain cookie from tenant B's app would reach tenant A's.
describe("hostOnlyCookies", () => {
  it("drops Domain from every Set-Cookie and keeps the rest of each cookie as it was", () => {
    const out = hostOnlyCookies([
      header("content-type", "text/html"),
      header("set-cookie", "sid=1; Domain=relay.example.com; Path=/; HttpOnly"),
      header("set-cookie", "theme=dark;domain=.example.com;Secure"),
      header("set-cookie", "__Host-x=1; Path=/; Secure"),
      header("set-cookie", "odd=1; Domain"),
    ]);
    expect(out.map((h) => h.value)).toEqual(["text/html", "sid=1; Path=/; HttpOnly", "theme=dark;Secure", "__Host-x=1; Path=/; Secure", "odd=1"]);
  });

  it("hands back the same list when no cookie names a Domain (the common answer costs nothing)", () => {
    const headers = [header("set-cookie", "a=1; Path=/"), header("x-domain", "Domain=1")];
    expect(hostOnlyCookies(headers)).toBe(headers);
  });
});
