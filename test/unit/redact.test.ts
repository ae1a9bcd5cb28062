import { describe, expect, it } from "vitest";
import { REDACTED, redactBody, redactHeader, redactQuery, redactText } from "../../services/traffic/redact.js";

const FERRY_KEY = "fcl_0123456789abcdef_c2VjcmV0LXNlY3JldA";
const JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";

describe("redaction", () => {
  it.each(["authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token", "x-partner-key", "x-session-id", "x-client-secret"])(
    "hides the header %s",
    (name) => expect(redactHeader(name, "value")).toBe(REDACTED),
  );

  it.each(["content-type", "accept", "user-agent", "x-request-id", "content-length"])("keeps the header %s", (name) => expect(redactHeader(name, "value")).toBe("value"));

  it("replaces Ferry secrets and JWTs wherever they stand", () => {
    expect(redactHeader("x-note", `use ${FERRY_KEY} please`)).toBe(`use ${REDACTED} please`);
    expect(redactHeader("x-forwarded-for", JWT)).toBe(REDACTED);
    expect(redactQuery(`a=${FERRY_KEY}&b=2`)).toBe(`a=${REDACTED}&b=2`);
    expect(redactBody(Buffer.from(`{"x":"${JWT}"}`)).toString()).toBe(`{"x":"${REDACTED}"}`);
  });

  it("hides query parameters, form fields and JSON members named like credentials", () => {
    expect(redactQuery("api_key=1&access_token=2&code=3&page=4&q=key")).toBe("api_key=%5Bredacted%5D&access_token=%5Bredacted%5D&code=%5Bredacted%5D&page=4&q=key");
    expect(redactQuery("%zz=1&flag")).toBe("%zz=1&flag");
    expect(redactBody(Buffer.from("user=bob&password=hunter2")).toString()).toBe("user=bob&password=%5Bredacted%5D");
    expect(redactBody(Buffer.from('{"user":"bob","Password" : "p\\"w","n":{"refresh_token":"t"}}')).toString()).toBe(
      '{"user":"bob","Password" : "[redacted]","n":{"refresh_token":"[redacted]"}}',
    );
    // The kept bytes may end inside the value.
    expect(redactBody(Buffer.from('{"password":"hunt')).toString()).toBe('{"password":"[redacted]"');
  });

  it("knows short password names, a form with a trailing newline, and secrets inside a nested URL", () => {
    expect(redactBody(Buffer.from("log=bob&pwd=hunter2")).toString()).toBe("log=bob&pwd=%5Bredacted%5D");
    expect(redactBody(Buffer.from("name=bob&pass=hunter2\n")).toString()).toBe("name=bob&pass=%5Bredacted%5D\n");
    expect(redactHeader("referer", `https://a.example/login?next=%2Fcb%3Ftoken%3D${FERRY_KEY}`)).toBe(`https://a.example/login?next=%2Fcb%3Ftoken%3D${REDACTED}`);
  });

  it("takes a client's worst case in one pass: 64 KiB of eyJ- (a backtracking pattern took seconds of the event loop)", () => {
    const hostile = "eyJ-".repeat(16_384);
    expect(redactBody(Buffer.from(hostile)).toString()).toBe(hostile);
    expect(redactHeader("x-note", hostile.slice(0, 8192))).toBe(hostile.slice(0, 8192));
    const tokens = `${JWT} `.repeat(2_000);
    expect(redactText(tokens)).toBe(`${REDACTED} `.repeat(2_000));
  });

  it("leaves binary bodies as they are", () => {
    const binary = Buffer.from([0, 1, 2, ...Buffer.from(FERRY_KEY)]);
    expect(redactBody(binary)).toBe(binary);
  });
});
