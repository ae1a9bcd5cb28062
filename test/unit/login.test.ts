import { randomBytes } from "node:crypto";
import { validateHeaderValue } from "node:http";
import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { FerryError } from "../../core/errors.js";
import { type AccessPolicy, AccessPolicySchema, LoginRuleSchema } from "../../gen/ferry/access/v1/access_policy_pb.js";
import type { AccessDecision, AccessDenied, AccessGranted, AccessRequest } from "../../services/access/access-control.js";
import { createAccessControl } from "../../services/access/create-access-control.js";
import { validateAccessPolicy } from "../../services/access/policy-check.js";
import { createSecretBox, parseSecretKeys, type SecretBox } from "../../services/auth/secret-box.js";
import { cookieName, cookieValue, LOGIN_COOKIES, SESSION_COOKIE, setCookie, STATE_COOKIE, withoutLoginCookies } from "../../services/access/login-cookies.js";
import { returnPath } from "../../services/login/login-routes.js";
import { forThisClient } from "../../services/login/oidc-client.js";
import { openLoginSecret, sealLoginSecret } from "../../services/access/login-secret.js";
import {
  checkSession,
  type LoginSession,
  sealSession,
  type SessionRule,
  type SessionScope,
  sessionFromClaims,
  sessionRefusal,
  sessionStart,
} from "../../services/access/login-session.js";

// The OpenID Connect sign-in's pure parts, each on its own: the secret box that seals client secrets and session
// cookies, the session cookie's checks, the cookie header handling, the return path (open redirects), the policy
// validation of "login" rules, and how the access engine turns a session cookie into a decision. Real crypto
// throughout (random keys per run); the identity provider is not involved (see test/e2e/login.test.ts).

const ISSUER = "https://login.example.com/acme";
const CLIENT_ID = "ferry-crm";
const T0 = Date.UTC(2030, 0, 1, 9, 0, 0);
const HOUR = 3_600_000;
/** The characters a cookie value and a URL query value can carry as they are. */
const COOKIE_SAFE = /^[A-Za-z0-9_.-]+$/;
const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

const key = () => randomBytes(32);
const split = (sealed: string) => {
  const dot = sealed.indexOf(".");
  return { id: sealed.slice(0, dot), body: sealed.slice(dot + 1) };
};

// ---------------------------------------------------------------------------------------------------------------
describe("secret-box: createSecretBox", () => {
  const box = createSecretBox([key()]);

  it("opens what it sealed, for the same purpose and context (empty, ASCII and non-ASCII texts)", () => {
    for (const plain of ["", "s3cret", "ünïcødé ✓ 🔑", "x".repeat(3000)]) {
      expect(box.open("login-client-secret", box.seal("login-client-secret", plain, "acme\0iss"), "acme\0iss")).toBe(plain);
    }
  });

  it("seals into cookie- and URL-safe text: '<8-char key id>.<base64url>', nothing of the plain text showing", () => {
    const sealed = box.seal("login-session", "alice@acme.com", "ctx");
    // It goes into a Set-Cookie value and a Location query unescaped: ';', ',', '=', '+', '/', spaces would break them.
    expect(sealed).toMatch(COOKIE_SAFE);
    expect(sealed).toMatch(/^[A-Za-z0-9_-]{8}\.[A-Za-z0-9_-]+$/);
    expect(encodeURIComponent(sealed)).toBe(sealed);
    expect(sealed).not.toContain("alice");
  });

  it("seals the same text differently each time (a fresh IV), and both open", () => {
    const seals = Array.from({ length: 20 }, () => box.seal("login-session", "same", "ctx"));
    // A repeated IV under AES-GCM would leak the XOR of plain texts and allow forging tags.
    expect(new Set(seals).size).toBe(20);
    expect(new Set(seals.map((s) => split(s).body.slice(0, 16))).size).toBe(20); // the IV is the first 12 bytes
    for (const s of seals) expect(box.open("login-session", s, "ctx")).toBe("same");
  });

  it("does not open a value sealed for another purpose: a session cookie is never taken for a client secret", () => {
    const sealed = box.seal("login-session", "x", "ctx");
    expect(box.open("login-client-secret", sealed, "ctx")).toBeUndefined();
    expect(box.open("login-state", sealed, "ctx")).toBeUndefined();
  });

  it("does not open a value sealed for another context (another tenant's, a shifted boundary, a prefix)", () => {
    const sealed = box.seal("login-client-secret", "x", "acme\0https://a");
    for (const other of ["globex\0https://a", "acm\0e\0https://a", "acme\0https://a\0", "acme", ""]) {
      expect(box.open("login-client-secret", sealed, other)).toBeUndefined();
    }
  });

  it("refuses a value with any bit of its IV, cipher text or tag changed (every position of the body)", () => {
    const sealed = box.seal("login-session", "tamper me", "ctx");
    const { id, body } = split(sealed);
    const opened: number[] = [];
    for (let i = 0; i < body.length; i++) {
      // XOR 32 flips the character's top bit, which always lands in a decoded byte (never in the padding bits).
      const flipped = B64URL[B64URL.indexOf(body[i]!) ^ 32]!;
      if (box.open("login-session", `${id}.${body.slice(0, i)}${flipped}${body.slice(i + 1)}`, "ctx") !== undefined) opened.push(i);
    }
    expect(opened).toEqual([]);
  });

  it("refuses every other spelling of a sealed value: only the exact text it sealed opens", () => {
    // 3 bytes of plain text give 31 bytes of body: 42 base64url characters, the last carrying 2 bits that decode to
    // nothing. Node's base64url decoder also skips characters outside the alphabet. Unless open() insists on the
    // canonical text, one sealed value has many spellings that open the same: "a flipped character anywhere in
    // the body" must not open, and a cookie value that is not what the relay set must not pass for it.
    const sealed = box.seal("login-session", "abc", "ctx");
    const { id, body } = split(sealed);
    expect(body).toHaveLength(42);
    const variants: [what: string, value: string][] = [];
    const last = B64URL.indexOf(body.at(-1)!);
    for (let low = 1; low < 16; low++) variants.push([`last character ^${low}`, `${id}.${body.slice(0, -1)}${B64URL[last ^ low]}`]);
    for (const stray of [".", "!", " ", "\n", "="]) {
      variants.push([`${JSON.stringify(stray)} inserted`, `${id}.${body.slice(0, 10)}${stray}${body.slice(10)}`], [`${JSON.stringify(stray)} appended`, `${sealed}${stray}`]);
    }
    const opening = variants.filter(([, v]) => box.open("login-session", v, "ctx") !== undefined).map(([what]) => what);
    expect(opening).toEqual([]);
  });

  it("refuses every truncation of a sealed value", () => {
    const sealed = box.seal("login-session", "truncate me", "ctx");
    for (let n = 0; n < sealed.length; n++) expect(box.open("login-session", sealed.slice(0, n), "ctx")).toBeUndefined();
  });

  it("refuses an unknown key id: a value of another relay's key, or a key id changed", () => {
    const sealed = box.seal("login-session", "x", "ctx");
    const { id, body } = split(sealed);
    expect(createSecretBox([key()]).open("login-session", sealed, "ctx")).toBeUndefined();
    const otherId = `${B64URL[(B64URL.indexOf(id[0]!) + 1) % 64]}${id.slice(1)}`;
    expect(box.open("login-session", `${otherId}.${body}`, "ctx")).toBeUndefined();
    for (const bad of [body, `.${body}`, `${id}.`, `${id}`, ".", ""]) expect(box.open("login-session", bad, "ctx")).toBeUndefined();
  });

  it("refuses a value over 8192 characters unread, even a genuine one; 8192 exactly still opens", () => {
    // Sealed length = 9 + ceil(4 * (28 + n) / 3): n = 6109 gives 8192, one more gives 8193.
    const atLimit = box.seal("login-session", "x".repeat(6109), "ctx");
    const over = box.seal("login-session", "x".repeat(6110), "ctx");
    expect([atLimit.length, over.length]).toEqual([8192, 8193]);
    expect(box.open("login-session", atLimit, "ctx")).toBe("x".repeat(6109));
    expect(box.open("login-session", over, "ctx")).toBeUndefined();
  });

  it("answers undefined, never throws, for input that is not a string (a cookie parser's output can be anything)", () => {
    for (const v of [undefined, null, 42, {}, ["a.b"], Buffer.from("a.b"), Symbol("s")]) {
      expect(() => box.open("login-session", v as unknown as string, "ctx")).not.toThrow();
      expect(box.open("login-session", v as unknown as string, "ctx")).toBeUndefined();
    }
  });

  it("refuses to be made without a key", () => {
    expect(() => createSecretBox([])).toThrow(/at least one key/);
  });

  it("rotates: box([new, old]) opens old seals and seals with new, which box([old]) cannot open", () => {
    const [oldKey, newKey] = [key(), key()];
    const before = createSecretBox([oldKey]);
    const during = createSecretBox([newKey, oldKey]);
    const sealedOld = before.seal("login-client-secret", "kept", "ctx");
    expect(during.open("login-client-secret", sealedOld, "ctx")).toBe("kept");
    const sealedNew = during.seal("login-client-secret", "fresh", "ctx");
    expect(split(sealedNew).id).not.toBe(split(sealedOld).id);
    expect(before.open("login-client-secret", sealedNew, "ctx")).toBeUndefined();
    // Once the old key is dropped, only new seals open.
    const after = createSecretBox([newKey]);
    expect(after.open("login-client-secret", sealedNew, "ctx")).toBe("fresh");
    expect(after.open("login-client-secret", sealedOld, "ctx")).toBeUndefined();
  });

  it("names a key by an id that reveals nothing of it, the same on every node", () => {
    const k = key();
    const a = split(createSecretBox([k]).seal("login-state", "x", "c")).id;
    expect(split(createSecretBox([Buffer.from(k)]).seal("login-state", "y", "d")).id).toBe(a);
    expect(k.toString("base64url")).not.toContain(a);
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe("secret-box: parseSecretKeys", () => {
  // 0xfb bytes encode as "+/v7..." in base64 and "-_v7..." in base64url: both alphabets' special characters.
  const special = Buffer.alloc(32, 0xfb);
  const other = Buffer.alloc(32, 0x11);
  const FROM = "/etc/ferry/secret.keys";

  const refusal = (text: string): Error => {
    try {
      parseSecretKeys(text, FROM);
    } catch (err) {
      return err as Error;
    }
    throw new Error(`accepted ${JSON.stringify(text)}`);
  };

  it("reads a key in base64 (with padding) and in base64url (without), to the same bytes", () => {
    expect(special.toString("base64")).toMatch(/[+/].*=$/);
    expect(parseSecretKeys(special.toString("base64"), FROM)).toEqual([special]);
    expect(parseSecretKeys(special.toString("base64url"), FROM)).toEqual([special]);
  });

  it("skips comments and blank lines (CRLF too), keeps the order: the first key seals", () => {
    const text = `# ferry secret keys\r\n\r\n${other.toString("base64")}\r\n   \n  # the old one\n ${special.toString("base64url")} \n`;
    expect(parseSecretKeys(text, FROM)).toEqual([other, special]);
  });

  it("reads comma-separated keys (FERRY_SECRET_KEY holds them on one line)", () => {
    expect(parseSecretKeys(`${other.toString("base64")}, ${special.toString("base64")}`, FROM)).toEqual([other, special]);
  });

  it("skips a whole comment line, commas and all", () => {
    // The file's own documentation says lines starting with "#" are skipped; splitting on "," before that
    // turns " then the old one" into a key, and the relay refuses to start.
    const text = `# the new key first, then the old one\n${other.toString("base64")}\n${special.toString("base64")}`;
    expect(() => parseSecretKeys(text, FROM)).not.toThrow();
    expect(parseSecretKeys(text, FROM)).toEqual([other, special]);
  });

  it("refuses a 16-byte (or 33-byte) key, naming the file and the size: a short key must stop the relay", () => {
    const short = refusal(randomBytes(16).toString("base64"));
    expect(short.message).toContain(FROM);
    expect(short.message).toMatch(/16 bytes/);
    expect(refusal(randomBytes(33).toString("base64")).message).toMatch(/33 bytes/);
  });

  it("refuses what is not base64, naming the file", () => {
    for (const text of ["not a key!", "secret=with=equals", `${other.toString("base64")}===`, "ab$cd"]) {
      const err = refusal(text);
      expect(err.message).toContain(FROM);
      expect(err.message).toMatch(/not a key in base64/);
    }
  });

  it("refuses a key given twice, even once as base64 and once as base64url", () => {
    const err = refusal(`${special.toString("base64")}\n${special.toString("base64url")}`);
    expect(err.message).toContain(FROM);
    expect(err.message).toMatch(/twice/);
  });

  it("refuses a text without any key, naming where it came from", () => {
    for (const text of ["", "\n\n", "# only a comment\n", " , , "]) {
      const err = refusal(text);
      expect(err.message).toContain(FROM);
      expect(err.message).toMatch(/no key/);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe("login-session", () => {
  const box = createSecretBox([key()]);
  const scope: SessionScope = { tenant: "acme", target: "crm", issuer: ISSUER, clientId: CLIENT_ID };
  const rule: SessionRule = { idleMs: HOUR, maxMs: 12 * HOUR, allowedEmailDomains: [], claims: {}, notBeforeMs: 0 };
  const alice = (more: Partial<LoginSession> = {}): LoginSession => ({
    sub: "u-alice",
    email: "alice@acme.com",
    emailVerified: true,
    name: "Alice",
    groups: ["support"],
    claims: {},
    iat: T0,
    seen: T0,
    exp: T0 + 12 * HOUR,
    ...more,
  });
  const str = (v: JsonValue) => fromJson(ValueSchema, v);

  describe("sealSession and checkSession", () => {
    it("opens for exactly the scope it was sealed for, with every field intact", () => {
      const verdict = checkSession(box, sealSession(box, alice(), scope), scope, rule, T0 + 1000);
      expect(verdict).toEqual({ ok: true, session: alice() });
    });

    it.each(["tenant", "target", "issuer", "clientId"] as const)("is invalid for another %s (a cookie moved to another app or provider)", (field) => {
      const sealed = sealSession(box, alice(), scope);
      const moved = { ...scope, [field]: `${scope[field]}x` };
      expect(checkSession(box, sealed, moved, rule, T0 + 1000)).toEqual({ ok: false, reason: "invalid" });
    });

    it("is invalid when the scope's parts only shift (tenant 'acm' + target 'ecrm' is not 'acme' + 'crm')", () => {
      const sealed = sealSession(box, alice(), scope);
      expect(checkSession(box, sealed, { ...scope, tenant: "acm", target: "ecrm" }, rule, T0)).toEqual({ ok: false, reason: "invalid" });
    });

    it('is "missing" for no cookie, "invalid" for junk, another key\'s seal or a state cookie', () => {
      expect(checkSession(box, "", scope, rule, T0)).toEqual({ ok: false, reason: "missing" });
      expect(checkSession(box, "garbage", scope, rule, T0)).toEqual({ ok: false, reason: "invalid" });
      expect(checkSession(box, sealSession(createSecretBox([key()]), alice(), scope), scope, rule, T0)).toEqual({ ok: false, reason: "invalid" });
      const state = box.seal("login-state", JSON.stringify(alice()), `${scope.tenant}\0${scope.target}`);
      expect(checkSession(box, state, scope, rule, T0)).toEqual({ ok: false, reason: "invalid" });
    });

    it("is invalid when what was sealed is not a session (an empty sub, no times, groups not strings)", () => {
      // Sealed by the relay, so this takes a leaked key; checked anyway, since the subject reaches the target.
      for (const bad of [{ ...alice(), sub: "" }, { ...alice(), exp: "never" }, { ...alice(), groups: [1] }, { ...alice(), claims: null }, { ...alice(), email: 7 }]) {
        const sealed = sealSession(box, bad as unknown as LoginSession, scope);
        expect(checkSession(box, sealed, scope, rule, T0)).toEqual({ ok: false, reason: "invalid" });
      }
    });

    it("expires at exp", () => {
      const sealed = sealSession(box, alice({ exp: T0 + 30 * 60_000 }), scope);
      expect(checkSession(box, sealed, scope, rule, T0 + 30 * 60_000 - 1).ok).toBe(true);
      expect(checkSession(box, sealed, scope, rule, T0 + 30 * 60_000)).toEqual({ ok: false, reason: "expired" });
    });

    it("expires at iat + the rule's maxMs, even before exp (the operator shortened sessions since sign-in)", () => {
      const sealed = sealSession(box, alice({ exp: T0 + 24 * HOUR }), scope);
      const shorter = { ...rule, maxMs: 2 * HOUR, idleMs: 10 * HOUR };
      expect(checkSession(box, sealed, scope, shorter, T0 + 2 * HOUR - 1).ok).toBe(true);
      expect(checkSession(box, sealed, scope, shorter, T0 + 2 * HOUR)).toEqual({ ok: false, reason: "expired" });
    });

    it("expires when unused for idleMs (now - seen >= idleMs), whatever exp says", () => {
      const sealed = sealSession(box, alice({ iat: T0, seen: T0 + HOUR }), scope);
      expect(checkSession(box, sealed, scope, rule, T0 + 2 * HOUR - 1).ok).toBe(true);
      expect(checkSession(box, sealed, scope, rule, T0 + 2 * HOUR)).toEqual({ ok: false, reason: "expired" });
    });

    it("is over when begun before the rule's notBeforeMs (the operator ended the sessions), and not when begun at it", () => {
      const sealed = sealSession(box, alice(), scope);
      expect(checkSession(box, sealed, scope, { ...rule, notBeforeMs: T0 + 1 }, T0 + 1000)).toEqual({ ok: false, reason: "expired" });
      expect(checkSession(box, sealed, scope, { ...rule, notBeforeMs: T0 }, T0 + 1000).ok).toBe(true);
    });
  });

  describe("sessionStart", () => {
    it("is now, unless the rule ended sessions at a time this node's clock has not reached: then that time, up to a minute ahead", () => {
      expect(sessionStart(T0, { notBeforeMs: 0 })).toBe(T0);
      expect(sessionStart(T0, { notBeforeMs: T0 - HOUR })).toBe(T0);
      expect(sessionStart(T0, { notBeforeMs: T0 + 5_000 })).toBe(T0 + 5_000);
      expect(sessionStart(T0, { notBeforeMs: T0 + HOUR })).toBe(T0 + 60_000);
    });
  });

  describe("sessionRefusal", () => {
    const domains = { ...rule, allowedEmailDomains: ["acme.com"] };

    it("takes anyone when the rule names no domain and no claim, even without an email", () => {
      expect(sessionRefusal(alice({ email: undefined, emailVerified: undefined }), rule)).toBeUndefined();
    });

    it("takes a verified email of an allowed domain, whatever its case", () => {
      expect(sessionRefusal(alice({ email: "Alice@ACME.Com" }), domains)).toBeUndefined();
    });

    it("refuses other domains, look-alikes and subdomains, naming the domain and the email", () => {
      for (const email of ["mallory@evil.com", "mallory@notacme.com", "mallory@acme.com.evil.com", "mallory@eng.acme.com", "acme.com"]) {
        const why = sessionRefusal(alice({ email }), domains);
        // The email itself may contain "acme.com": the sentence must say which domains the app takes.
        expect(why, email).toMatch(/^this app is for acme\.com accounts with a verified email address/i);
        expect(why, email).toContain(`${email} is not one`);
      }
    });

    it("refuses an email of the domain that the provider did not verify (anyone can type one at some providers)", () => {
      expect(sessionRefusal(alice({ emailVerified: undefined }), domains)).toMatch(/verified/);
      expect(sessionRefusal(alice({ emailVerified: false }), domains)).toMatch(/verified/);
    });

    it("refuses a session without an email when domains are required", () => {
      expect(sessionRefusal(alice({ email: undefined }), domains)).toMatch(/no email/);
    });

    it("checks the rule's claims against the session's: a string is one of the claim's entries", () => {
      const support = { ...rule, claims: { groups: str("support") } };
      expect(sessionRefusal(alice({ claims: { groups: ["staff", "support"] } }), support)).toBeUndefined();
      expect(sessionRefusal(alice({ claims: { groups: "support" } }), support)).toBeUndefined();
      expect(sessionRefusal(alice({ claims: { groups: ["staff"] } }), support)).toMatch(/does not carry/);
      // session.groups (the profile) is not what is checked: only the claims the rule asked to keep.
      expect(sessionRefusal(alice({ groups: ["support"], claims: {} }), support)).toMatch(/does not carry/);
      const anyOf = { ...rule, claims: { groups: create(ValueSchema, { kind: { case: "listValue", value: { values: [str("admins"), str("support")] } } }) } };
      expect(sessionRefusal(alice({ claims: { groups: ["support"] } }), anyOf)).toBeUndefined();
      expect(sessionRefusal(alice({ claims: { groups: ["staff"] } }), anyOf)).toMatch(/does not carry/);
    });

    it("checks a dotted claim (Keycloak's realm_access.roles) kept by sessionFromClaims, through a sealed cookie", () => {
      const roles = { ...rule, claims: { "realm_access.roles": str("admin") } };
      const make = (r: string[]) => sessionFromClaims({ sub: "u", realm_access: { roles: r } }, [roles.claims], T0, rule.maxMs);
      const opened = (s: LoginSession) => {
        const v = checkSession(box, sealSession(box, s, scope), scope, roles, T0);
        if (!v.ok) throw new Error(v.reason);
        return v.session;
      };
      expect(sessionRefusal(opened(make(["user", "admin"])), roles)).toBeUndefined();
      expect(sessionRefusal(opened(make(["user"])), roles)).toBeDefined();
    });
  });

  describe("sessionFromClaims", () => {
    const token = {
      sub: "u-alice",
      email: "alice@acme.com",
      email_verified: true,
      name: "Alice",
      groups: ["support"],
      department: "eng",
      salary: 100_000,
      realm_access: { roles: ["admin"], other: "x" },
    };

    it("keeps sub, email, name, groups and only the claims the rules name (dotted paths too), with its times", () => {
      const s = sessionFromClaims(token, [{ department: str("eng"), "realm_access.roles": str("admin") }, { absent: str("x") }], T0, 8 * HOUR);
      expect(s).toEqual({
        sub: "u-alice",
        email: "alice@acme.com",
        emailVerified: true,
        name: "Alice",
        groups: ["support"],
        claims: { department: "eng", "realm_access.roles": ["admin"] },
        iat: T0,
        seen: T0,
        exp: T0 + 8 * HOUR,
      });
      expect(Object.keys(s.claims)).not.toContain("absent");
    });

    it("keeps of a list claim only the entries some rule compares with: the session stays small, every rule decides as before", () => {
      const many = { sub: "u", roles: Array.from({ length: 300 }, (_, i) => `role-${i}`) };
      const rules = [{ roles: str("role-7") }, { roles: fromJson(ValueSchema, ["role-9", "role-7", "absent"]) }];
      const s = sessionFromClaims(many, rules, T0, HOUR);
      expect(s.claims).toEqual({ roles: ["role-7", "role-9"] });
      for (const claims of rules) {
        const asked = { ...rule, claims };
        expect(sessionRefusal(s, asked)).toBeUndefined();
        expect(sessionRefusal(sessionFromClaims({ sub: "u", roles: ["role-1"] }, rules, T0, HOUR), asked)).toBeDefined();
      }
    });

    it("sets emailVerified only for email_verified === true (a string 'true' is not a verification)", () => {
      expect(sessionFromClaims({ ...token, email_verified: "true" }, [], T0, HOUR).emailVerified).toBeUndefined();
      expect(sessionFromClaims({ ...token, email_verified: false }, [], T0, HOUR).emailVerified).toBeUndefined();
    });

    it("bounds groups: non-strings and over-long ones dropped, at most 100 kept in order", () => {
      const many = Array.from({ length: 150 }, (_, i) => `g${i}`);
      const s = sessionFromClaims({ sub: "u", groups: [42, null, { g: 1 }, "x".repeat(513), ...many] }, [], T0, HOUR);
      expect(s.groups).toEqual(many.slice(0, 100));
      expect(sessionFromClaims({ sub: "u", groups: "support" }, [], T0, HOUR).groups).toBeUndefined();
    });

    it("drops an email or name over 512 characters (keeps one of 512), and non-string ones", () => {
      const long = sessionFromClaims({ sub: "u", email: `${"a".repeat(507)}@b.com`, name: "n".repeat(513) }, [], T0, HOUR);
      expect(long.email).toBeUndefined();
      expect(long.name).toBeUndefined();
      const edge = sessionFromClaims({ sub: "u", email: `${"a".repeat(506)}@b.com`, name: "n".repeat(512) }, [], T0, HOUR);
      expect(edge.email).toHaveLength(512);
      expect(edge.name).toHaveLength(512);
      const odd = sessionFromClaims({ sub: "u", email: ["a@b.com"], name: 7 }, [], T0, HOUR);
      expect([odd.email, odd.name]).toEqual([undefined, undefined]);
    });
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe("login-cookies", () => {
  describe("cookieValue", () => {
    it("finds the cookie among others, with or without spaces", () => {
      expect(cookieValue("theme=dark; ferry_session=abc; lang=en", SESSION_COOKIE)).toBe("abc");
      expect(cookieValue("theme=dark;ferry_session=abc;lang=en", SESSION_COOKIE)).toBe("abc");
      expect(cookieValue("  ferry_session  =  abc  ", SESSION_COOKIE)).toBe("abc");
    });

    it("takes the first of two cookies of the name (the most specific path comes first)", () => {
      expect(cookieValue("ferry_session=one; ferry_session=two", SESSION_COOKIE)).toBe("one");
    });

    it("reads every line of an array header", () => {
      expect(cookieValue(["theme=dark", "ferry_session=abc"], SESSION_COOKIE)).toBe("abc");
      expect(cookieValue(["ferry_session=one", "ferry_session=two"], SESSION_COOKIE)).toBe("one");
    });

    it("does not take a cookie whose name only contains the name, nor another case", () => {
      // An app's own xferry_session, set by a script of the app, must never be read as the relay's session.
      expect(cookieValue("xferry_session=evil", SESSION_COOKIE)).toBe("");
      expect(cookieValue("ferry_session_old=evil", SESSION_COOKIE)).toBe("");
      expect(cookieValue("xferry_session=evil; ferry_session=good", SESSION_COOKIE)).toBe("good");
      expect(cookieValue("FERRY_SESSION=evil", SESSION_COOKIE)).toBe("");
      expect(cookieValue("theme=ferry_session=evil", SESSION_COOKIE)).toBe("");
    });

    it('is "" when there is no such cookie, no header, or a nameless pair', () => {
      expect(cookieValue(undefined, SESSION_COOKIE)).toBe("");
      expect(cookieValue("", SESSION_COOKIE)).toBe("");
      expect(cookieValue([], SESSION_COOKIE)).toBe("");
      expect(cookieValue("ferry_session", SESSION_COOKIE)).toBe("");
      expect(cookieValue("=ferry_session=x", SESSION_COOKIE)).toBe("");
    });

    it("keeps an '=' inside the value", () => {
      expect(cookieValue("ferry_login=a=b==", STATE_COOKIE)).toBe("a=b==");
    });
  });

  describe("cookieName", () => {
    it("has the __Host- prefix at a host's root over TLS only (a path-routed app, or cleartext, cannot have it)", () => {
      expect(cookieName(SESSION_COOKIE, { path: "/", secure: true })).toBe("__Host-ferry_session");
      expect(cookieName(STATE_COOKIE, { path: "/", secure: true })).toBe("__Host-ferry_login");
      expect(cookieName(SESSION_COOKIE, { path: "/", secure: false })).toBe("ferry_session");
      expect(cookieName(SESSION_COOKIE, { path: "/relay/acme/crm/", secure: true })).toBe("ferry_session");
    });
  });

  describe("withoutLoginCookies", () => {
    it("removes both login cookies, __Host- ones too, and keeps the app's own in their order", () => {
      expect(LOGIN_COOKIES).toEqual([SESSION_COOKIE, STATE_COOKIE, "__Host-ferry_session", "__Host-ferry_login"]);
      expect(withoutLoginCookies("a=1; ferry_session=s; b=2; ferry_login=t; c=3")).toBe("a=1; b=2; c=3");
      expect(withoutLoginCookies("a=1; __Host-ferry_session=s; __Host-ferry_login=t; c=3")).toBe("a=1; c=3");
      expect(withoutLoginCookies("a=1;ferry_session=s;b=2")).toBe("a=1; b=2");
    });

    it("removes them with spaces around the name, and without a value", () => {
      expect(withoutLoginCookies(" ferry_session = s ; a=1; ferry_login")).toBe("a=1");
    });

    it("keeps look-alike names and values that mention them", () => {
      expect(withoutLoginCookies("xferry_session=1; ferry_session=2; ferry_login_x=3; a=ferry_session")).toBe("xferry_session=1; ferry_login_x=3; a=ferry_session");
    });

    it("is undefined when nothing is left (no empty Cookie header goes to the target)", () => {
      expect(withoutLoginCookies("ferry_session=s")).toBeUndefined();
      expect(withoutLoginCookies("ferry_session=s; ferry_login=t")).toBeUndefined();
      expect(withoutLoginCookies("")).toBeUndefined();
      expect(withoutLoginCookies(" ; ;ferry_session=s; ")).toBeUndefined();
    });
  });

  describe("setCookie", () => {
    const parse = (header: string) => {
      const [pair, ...attrs] = header.split("; ");
      return { pair, attrs };
    };

    it("sets HttpOnly, SameSite=Lax, Path, Max-Age and Secure on TLS; never a Domain", () => {
      const { pair, attrs } = parse(setCookie(SESSION_COOKIE, "v.alue", { path: "/relay/acme/crm/", secure: true }, 3600));
      expect(pair).toBe("ferry_session=v.alue");
      expect(attrs.sort()).toEqual(["HttpOnly", "Max-Age=3600", "Path=/relay/acme/crm/", "SameSite=Lax", "Secure"]);
    });

    it("leaves Secure out without TLS (the browser would drop the cookie)", () => {
      const { attrs } = parse(setCookie(STATE_COOKIE, "v", { path: "/.ferry/callback", secure: false }, 600));
      expect(attrs).not.toContain("Secure");
      expect(attrs).toEqual(expect.arrayContaining(["HttpOnly", "SameSite=Lax", "Path=/.ferry/callback", "Max-Age=600"]));
    });

    it("deletes with Max-Age=0, and never writes a negative or fractional Max-Age", () => {
      expect(parse(setCookie(SESSION_COOKIE, "", { path: "/", secure: true }, 0))).toMatchObject({ pair: "ferry_session=" });
      expect(parse(setCookie(SESSION_COOKIE, "", { path: "/", secure: true }, 0)).attrs).toContain("Max-Age=0");
      expect(parse(setCookie(SESSION_COOKIE, "v", { path: "/", secure: true }, -5)).attrs).toContain("Max-Age=0");
      expect(parse(setCookie(SESSION_COOKIE, "v", { path: "/", secure: true }, 43139.9)).attrs).toContain("Max-Age=43139");
    });
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe("oidc-client: forThisClient (azp)", () => {
  it("takes a token for one audience, or one whose azp is the client; refuses another azp, or several audiences without one", () => {
    expect(forThisClient({ aud: CLIENT_ID }, CLIENT_ID)).toBe(true);
    expect(forThisClient({ aud: [CLIENT_ID] }, CLIENT_ID)).toBe(true);
    expect(forThisClient({ aud: [CLIENT_ID, "api"], azp: CLIENT_ID }, CLIENT_ID)).toBe(true);
    expect(forThisClient({ aud: [CLIENT_ID, "api"] }, CLIENT_ID)).toBe(false);
    expect(forThisClient({ aud: CLIENT_ID, azp: "other-client" }, CLIENT_ID)).toBe(false);
  });
});

describe("login-routes: returnPath", () => {
  it('is "/" when none is given', () => {
    expect(returnPath(null)).toBe("/");
    expect(returnPath("")).toBe("/");
  });

  it("keeps a path of the app with its query", () => {
    for (const p of ["/", "/a/b?x=1", "/a/b?next=//evil.example", "/%2F%2Fevil.example", "/caf%C3%A9", "/a/.well-known/x", "/a/..b/c...", "/a?up=../x"]) {
      expect(returnPath(p)).toBe(p);
    }
  });

  it.each([
    ["a protocol-relative URL", "//evil.example"],
    ["three slashes", "///evil.example"],
    ["a backslash browsers read as '/'", "/\\evil.example"],
    ["a backslash later on", "/a\\b"],
    ["an absolute URL", "https://evil.example"],
    ["a scheme without slashes", "javascript:alert(1)"],
    ["a relative path", "evil"],
    ["a query only", "?x=1"],
    ["a tab (browsers strip it, making //)", "/\t/evil.example"],
    ["a line feed (header splitting)", "/a\nSet-Cookie: x=1"],
    ["a carriage return", "/a\rb"],
    ["NUL", "/a\u0000b"],
    ["DEL", "/a\u007fb"],
    ["a dot-dot segment (out of /relay/{tenant}/{target} to another tenant's app)", "/../../evil/app/"],
    ["a percent-encoded dot-dot segment", "/%2e%2e/%2E%2e/evil/app/"],
    ["a half-encoded dot-dot segment", "/.%2e/evil"],
    ["a dot-dot at the end", "/a/.."],
    ["a dot segment", "/./x"],
    ["a dot-dot before the query", "/a/..?x=1"],
  ])("refuses %s", (_, value) => {
    // The relay redirects to prefix + this after sign-in; for a host-routed app the prefix is "": an open redirect.
    expect(returnPath(value)).toBeUndefined();
  });

  it("refuses more than 2048 characters (keeps 2048)", () => {
    expect(returnPath(`/${"a".repeat(2047)}`)).toHaveLength(2048);
    expect(returnPath(`/${"a".repeat(2048)}`)).toBeUndefined();
  });

  it("accepts only what can go into a Location header as it is", () => {
    // /.ferry/login?return=%E2%82%AC decodes to "/€". Accepted, it is sealed into the state cookie and used only
    // after the provider's code was redeemed: res.writeHead then throws ERR_INVALID_CHAR and the sign-in ends in
    // an error instead of a session. Such a path is refused (or encoded) up front, or not at all.
    for (const value of ["/\u20ac", "/\u2028", "/caf\u00e9"]) {
      const kept = returnPath(value);
      if (kept !== undefined) expect(() => validateHeaderValue("location", kept), JSON.stringify(value)).not.toThrow();
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe("policy-check: login rules", () => {
  const LOGIN = { issuer: ISSUER, clientId: CLIENT_ID, clientSecret: "s3cret" };
  const validate = (rules: JsonValue[]) => validateAccessPolicy(fromJson(AccessPolicySchema, { rules }), { clientCertificates: false });
  const loginRule = (login: Record<string, JsonValue>, more: Record<string, JsonValue> = {}): JsonValue => ({
    name: "staff",
    targets: ["crm"],
    require: ["login"],
    login: { ...LOGIN, ...login },
    ...more,
  });
  const refusal = (rules: JsonValue[]): FerryError => {
    try {
      validate(rules);
    } catch (err) {
      expect(err).toBeInstanceOf(FerryError);
      const e = err as FerryError;
      expect([e.kind, e.code]).toEqual(["invalid_argument", "invalid_access_policy"]);
      return e;
    }
    throw new Error(`accepted ${JSON.stringify(rules)}`);
  };

  it("writes every default out: scopes, session durations; domains lower-cased", () => {
    const login = validate([loginRule({ allowedEmailDomains: ["ACME.com", "Example.ORG"] })]).rules[0]!.login!;
    expect(login.scopes).toEqual(["openid", "email", "profile"]);
    expect([login.sessionIdle?.seconds, login.sessionIdle?.nanos]).toEqual([3600n, 0]);
    expect([login.sessionMax?.seconds, login.sessionMax?.nanos]).toEqual([43_200n, 0]);
    expect(login.allowedEmailDomains).toEqual(["acme.com", "example.org"]);
    expect(login.clientSecret).toBe("s3cret"); // sealing is the caller's step (sealLoginSecret)
  });

  it('puts "openid" first when the scopes lack it, and drops repeated scopes', () => {
    expect(validate([loginRule({ scopes: ["email", "groups"] })]).rules[0]!.login!.scopes).toEqual(["openid", "email", "groups"]);
    expect(validate([loginRule({ scopes: ["email", "openid", "email"] })]).rules[0]!.login!.scopes).toEqual(["email", "openid"]);
  });

  it("defaults sessionMax to sessionIdle when that is longer than 12h", () => {
    const login = validate([loginRule({ sessionIdle: "86400s" })]).rules[0]!.login!;
    expect(login.sessionMax?.seconds).toBe(86_400n);
  });

  it("accepts the bounds themselves: 1m idle, 30d max, an http issuer on loopback, sessions ended at 1970 and at 9999", () => {
    expect(() => validate([loginRule({ sessionIdle: "60s", sessionMax: "2592000s" })])).not.toThrow();
    for (const at of ["1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z"]) expect(() => validate([loginRule({ sessionsNotBefore: at })])).not.toThrow();
    for (const issuer of ["http://127.0.0.1:9000/realm", "http://localhost:9000"]) expect(() => validate([loginRule({ issuer })])).not.toThrow();
  });

  it("does not change the policy it was given (it returns a normalized copy)", () => {
    const input = fromJson(AccessPolicySchema, { rules: [loginRule({})] });
    validateAccessPolicy(input, { clientCertificates: false });
    expect(input.rules[0]!.login!.scopes).toEqual([]);
    expect(input.rules[0]!.login!.sessionIdle).toBeUndefined();
  });

  it.each<[string, JsonValue, RegExp]>([
    ["login without require naming it", { name: "staff", targets: ["crm"], login: LOGIN }, /login is set but require does not name login/],
    ["require login without login", { name: "staff", targets: ["crm"], require: ["login"] }, /require names login, so login/],
    ["no issuer", loginRule({ issuer: "" }), /login\.issuer is needed/],
    ["an http issuer on a non-loopback host", loginRule({ issuer: "http://login.example.com/acme" }), /login\.issuer .*https/],
    ["an issuer that is not a URL", loginRule({ issuer: "login.example.com" }), /login\.issuer/],
    ["no clientId", loginRule({ clientId: "" }), /login\.clientId/],
    ["a clientId with a space", loginRule({ clientId: "ferry crm" }), /login\.clientId/],
    ["no client secret at all", loginRule({ clientSecret: "" }), /clientSecret.*clientSecretEnv/],
    ["clientSecret with clientSecretEnv", loginRule({ clientSecretEnv: "CRM_SECRET" }), /clientSecret or clientSecretEnv, not both/],
    ["a bad environment variable name", loginRule({ clientSecret: "", clientSecretEnv: "CRM-SECRET" }), /login\.clientSecretEnv "CRM-SECRET"/],
    ["an environment variable name starting with a digit", loginRule({ clientSecret: "", clientSecretEnv: "1SECRET" }), /login\.clientSecretEnv/],
    ["a scope with a space", loginRule({ scopes: ["openid email"] }), /login\.scopes: "openid email"/],
    ["a bad email domain", loginRule({ allowedEmailDomains: ["not a domain"] }), /login\.allowedEmailDomains: "not a domain"/],
    ["an email domain with '@'", loginRule({ allowedEmailDomains: ["@acme.com"] }), /login\.allowedEmailDomains/],
    ["sessionsNotBefore before 1970", loginRule({ sessionsNotBefore: "1969-12-31T23:59:59Z" }), /login\.sessionsNotBefore must be a time/],
    ["sessionIdle below 1m", loginRule({ sessionIdle: "59s" }), /login\.sessionIdle must be between/],
    ["sessionMax below sessionIdle", loginRule({ sessionIdle: "7200s", sessionMax: "3600s" }), /login\.sessionMax .* must be at least login\.sessionIdle/],
    ["sessionMax over 30d", loginRule({ sessionMax: "2592001s" }), /login\.sessionMax must be between/],
    ["sessionIdle over 30d", loginRule({ sessionIdle: "2592001s" }), /login\.sessionIdle must be between/],
  ])("refuses %s, naming the field", (_, rule, message) => {
    const err = refusal([rule]);
    expect(err.message).toMatch(message);
    expect(err.message).toMatch(/rule "staff"/);
  });

  it("refuses two login rules for one target with different issuers or client ids (one session cookie per target)", () => {
    const other = { issuer: "https://other.example.com", clientId: CLIENT_ID, clientSecret: "x" };
    const e1 = refusal([loginRule({}, { name: "a", paths: ["/a"] }), { name: "b", targets: ["crm"], require: ["login"], login: other }]);
    expect(e1.message).toMatch(/rule "b": login uses another issuer or client id than rule "a"/);
    refusal([loginRule({}, { name: "a" }), { name: "b", targets: ["crm"], require: ["login"], login: { ...LOGIN, clientId: "other-client" } }]);
    // "*" covers crm as well.
    refusal([loginRule({}, { name: "a", targets: ["*"] }), { name: "b", targets: ["crm"], require: ["login"], login: other }]);
  });

  it("accepts different providers for different targets, and the same provider twice for one target", () => {
    const other = { issuer: "https://other.example.com", clientId: "erp", clientSecret: "x" };
    expect(() => validate([loginRule({}, { name: "a" }), { name: "b", targets: ["erp"], require: ["login"], login: other }])).not.toThrow();
    expect(() => validate([loginRule({ claims: { groups: "admins" } }, { name: "a", paths: ["/admin"] }), loginRule({}, { name: "b" })])).not.toThrow();
  });

  it("clears a sealed secret when a clientSecret is given again (the new one replaces it)", () => {
    const login = validate([loginRule({ clientSecretSealed: "AAAAAAAA.old" })]).rules[0]!.login!;
    expect(login.clientSecretSealed).toBe("");
    expect(login.clientSecret).toBe("s3cret");
  });

  it("keeps a sealed secret alone (a policy read back and set again)", () => {
    const login = validate([loginRule({ clientSecret: "", clientSecretSealed: "AAAAAAAA.old" })]).rules[0]!.login!;
    expect(login.clientSecretSealed).toBe("AAAAAAAA.old");
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe("login-secret", () => {
  const box = createSecretBox([key()]);
  const rule = (more: Partial<{ clientSecret: string; clientSecretEnv: string; issuer: string; clientId: string }> = {}) =>
    create(LoginRuleSchema, { issuer: ISSUER, clientId: CLIENT_ID, clientSecret: "s3cret", ...more });

  it("sealLoginSecret clears clientSecret and sets clientSecretSealed, which does not show the secret", () => {
    const login = rule();
    sealLoginSecret(box, login, "acme");
    expect(login.clientSecret).toBe("");
    expect(login.clientSecretSealed).toMatch(COOKIE_SAFE);
    expect(login.clientSecretSealed).not.toContain("s3cret");
  });

  it("sealLoginSecret leaves a rule without a clientSecret as it is (its sealed secret stays)", () => {
    const login = rule();
    sealLoginSecret(box, login, "acme");
    const sealed = login.clientSecretSealed;
    sealLoginSecret(box, login, "acme");
    expect(login.clientSecretSealed).toBe(sealed);
  });

  it("openLoginSecret opens it for the same tenant, issuer and client id", () => {
    const login = rule();
    sealLoginSecret(box, login, "acme");
    expect(openLoginSecret(box, login, "acme", {})).toBe("s3cret");
  });

  it("openLoginSecret refuses it for another tenant, issuer or client id, with a readable message", () => {
    // A sealed secret copied into another tenant's policy, or next to another provider, must not be usable there.
    const login = rule();
    sealLoginSecret(box, login, "acme");
    const moved = [
      () => openLoginSecret(box, login, "globex", {}),
      () => openLoginSecret(box, { ...login, issuer: "https://evil.example" }, "acme", {}),
      () => openLoginSecret(box, { ...login, clientId: "other" }, "acme", {}),
      () => openLoginSecret(createSecretBox([key()]), login, "acme", {}),
    ];
    for (const open of moved) expect(open).toThrow(/sealed client secret does not open/);
  });

  it("openLoginSecret reads clientSecretEnv from the env given, and throws naming the variable when it is unset", () => {
    const login = rule({ clientSecret: "", clientSecretEnv: "FERRY_LOGIN_ACME_CRM" });
    expect(openLoginSecret(box, login, "acme", { FERRY_LOGIN_ACME_CRM: "from-env" })).toBe("from-env");
    expect(() => openLoginSecret(box, login, "acme", {})).toThrow(/FERRY_LOGIN_ACME_CRM.*not set/);
    expect(() => openLoginSecret(box, login, "acme", { FERRY_LOGIN_ACME_CRM: "" })).toThrow(/FERRY_LOGIN_ACME_CRM.*not set/);
  });

  it("openLoginSecret reads only the tenant's own FERRY_LOGIN_<TENANT>_ variables (a tenant admin picks where the secret goes)", () => {
    const env = { FERRY_SECRET_KEY: "master", FERRY_LOGIN_GLOBEX_CRM: "theirs", FERRY_LOGIN_BIG_CO_CRM: "big-co's", FERRY_LOGIN_ACME_: "empty name" };
    // FERRY_LOGIN_ACME_APP_CRM is tenant acme-app's (FERRY_LOGIN_ACME_APP_ + CRM): not acme's.
    for (const name of ["FERRY_SECRET_KEY", "FERRY_LOGIN_GLOBEX_CRM", "FERRY_LOGIN_ACME_", "FERRY_LOGIN_ACMEX_CRM", "FERRY_LOGIN_ACME_APP_CRM"]) {
      expect(() => openLoginSecret(box, rule({ clientSecret: "", clientSecretEnv: name }), "acme", env), name).toThrow(/must be FERRY_LOGIN_ACME_NAME, NAME letters and digits only/);
    }
    expect(() => openLoginSecret(box, rule({ clientSecret: "", clientSecretEnv: "FERRY_LOGIN_ACME_APP_CRM" }), "acme-app", { FERRY_LOGIN_ACME_APP_CRM: "x" })).not.toThrow();
    expect(openLoginSecret(box, rule({ clientSecret: "", clientSecretEnv: "FERRY_LOGIN_BIG_CO_CRM" }), "big-co", env)).toBe("big-co's");
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe("create-access-control: a login rule", () => {
  const box = createSecretBox([key()]);
  const scopeOf = (target: string): SessionScope => ({ tenant: "acme", target, issuer: ISSUER, clientId: CLIENT_ID });
  const IDP_CLAIMS = { sub: "u-alice", email: "alice@acme.com", email_verified: true, name: "Alice", groups: ["support", "staff"] };

  /** A policy as the admin API stores it: validated, then its client secret sealed for tenant acme. */
  const storedPolicy = (sealWith: SecretBox = box): AccessPolicy => {
    const policy = validateAccessPolicy(
      fromJson(AccessPolicySchema, {
        rules: [
          {
            name: "staff",
            targets: ["crm", "erp"],
            require: ["login"],
            login: { issuer: ISSUER, clientId: CLIENT_ID, clientSecret: "s3cret", allowedEmailDomains: ["acme.com"], claims: { groups: "support" } },
          },
          { name: "open", targets: ["wiki"] },
        ],
      }),
      { clientCertificates: false },
    );
    sealLoginSecret(sealWith, policy.rules[0]!.login!, "acme");
    return policy;
  };

  const control = (opts: { secrets?: SecretBox } = { secrets: box }) => {
    const clock = { t: T0 };
    const policy = storedPolicy();
    const access = createAccessControl({
      policyOf: (tenant) => (tenant === "acme" ? policy : undefined),
      checkClientKey: () => ({ ok: false, reason: "unknown" }),
      verifyJwt: () => {
        throw new Error("no");
      },
      ...(opts.secrets ? { secrets: opts.secrets } : {}),
      now: () => clock.t,
    });
    const check = async (cookie?: string, more: Partial<AccessRequest> = {}): Promise<AccessDecision> =>
      access.check({ tenant: "acme", target: "crm", path: "/", clientAddress: "203.0.113.7", headers: {}, tls: true, ...(cookie !== undefined ? { cookie } : {}), ...more });
    return { access, clock, check };
  };

  const sessionCookie = (claims: Record<string, unknown> = IDP_CLAIMS, at = T0, target = "crm", sealWith = box) =>
    `theme=dark; ${SESSION_COOKIE}=${sealSession(sealWith, sessionFromClaims(claims, [{ groups: fromJson(ValueSchema, "support") }], at, 12 * HOUR), scopeOf(target))}`;
  const denied = (d: AccessDecision): AccessDenied => {
    if (d.allowed) throw new Error(`granted: ${JSON.stringify(d)}`);
    return d;
  };
  const allowed = (d: AccessDecision): AccessGranted => {
    if (!d.allowed) throw new Error(`denied: ${d.reason} ${d.error.message}`);
    return d;
  };

  it("without a cookie: login_required, 401, and signIn so a browser goes to the sign-in page", async () => {
    const d = denied(await control().check());
    expect([d.reason, d.error.kind, d.signIn, d.rule]).toEqual(["login_required", "unauthenticated", true, "staff"]);
    // Another cookie of the app, or one of a look-alike name, is no session either.
    expect(denied(await control().check("theme=dark; xferry_session=abc")).reason).toBe("login_required");
  });

  it("with a valid session cookie: allowed by login, subject = sub, the profile for X-Ferry-Identity", async () => {
    const { check, clock } = control();
    clock.t = T0 + 1000;
    const d = allowed(await check(sessionCookie()));
    expect(d).toMatchObject({ rule: "staff", method: "login", subject: "u-alice" });
    expect(d.profile).toEqual({ email: "alice@acme.com", name: "Alice", groups: ["support", "staff"] });
    expect(d.consumedHeaders).toEqual([]);
    expect(d.renewedSession).toBeUndefined();
  });

  it("refuses a user outside allowedEmailDomains, or without the rule's claims: login_refused, 403", async () => {
    for (const claims of [{ ...IDP_CLAIMS, email: "alice@gmail.com" }, { ...IDP_CLAIMS, email_verified: false }, { ...IDP_CLAIMS, groups: ["staff"] }]) {
      const d = denied(await control().check(sessionCookie(claims)));
      expect([d.reason, d.error.kind], JSON.stringify(claims)).toEqual(["login_refused", "permission_denied"]);
      expect(d.signIn).toBeUndefined(); // signing in again would not help: no redirect loop
    }
  });

  it("an expired session: login_expired, 401 with signIn", async () => {
    const { check, clock } = control();
    const cookie = sessionCookie();
    clock.t = T0 + HOUR; // idle for the default sessionIdle of 1h
    const d = denied(await check(cookie));
    expect([d.reason, d.error.kind, d.signIn]).toEqual(["login_expired", "unauthenticated", true]);
  });

  it("a tampered session, one of another key, or one of another target: login_required", async () => {
    const cookie = sessionCookie();
    const i = cookie.length - 10;
    const tampered = `${cookie.slice(0, i)}${B64URL[B64URL.indexOf(cookie[i]!) ^ 32]}${cookie.slice(i + 1)}`;
    expect(denied(await control().check(tampered)).reason).toBe("login_required");
    expect(denied(await control().check(sessionCookie(IDP_CLAIMS, T0, "crm", createSecretBox([key()])))).reason).toBe("login_required");
    // The rule covers erp too, but crm's session is crm's only.
    expect(denied(await control().check(sessionCookie(IDP_CLAIMS, T0, "crm"), { target: "erp" })).reason).toBe("login_required");
    expect(allowed(await control().check(sessionCookie(IDP_CLAIMS, T0, "erp"), { target: "erp" })).subject).toBe("u-alice");
  });

  it("never counts sessions that do not open or have expired against the source's back-off", async () => {
    // A session cannot be guessed, and after a key rotation a whole office behind one address brings old ones.
    const forged = `${SESSION_COOKIE}=${sealSession(createSecretBox([key()]), sessionFromClaims(IDP_CLAIMS, [], T0, HOUR), scopeOf("crm"))}`;
    const a = control();
    for (let i = 0; i < 10; i++) expect(denied(await a.check(forged)).reason).toBe("login_required");
    expect(allowed(await a.check(sessionCookie())).method).toBe("login");

    const b = control();
    const old = sessionCookie(IDP_CLAIMS, T0 - 2 * HOUR);
    for (let i = 0; i < 10; i++) expect(denied(await b.check(old)).reason).toBe("login_expired");
    expect(allowed(await b.check(sessionCookie())).method).toBe("login");
  });

  it("renews a session last touched 60 s ago or more: renewedSession opens with seen = now, iat and exp kept", async () => {
    const { check, clock } = control();
    const cookie = sessionCookie();
    clock.t = T0 + 61_000;
    const renewed = allowed(await check(cookie)).renewedSession;
    expect(renewed).toBeDefined();
    expect(renewed!.maxAgeSeconds).toBe((12 * HOUR - 61_000) / 1000);
    const rule: SessionRule = { idleMs: HOUR, maxMs: 12 * HOUR, allowedEmailDomains: [], claims: {}, notBeforeMs: 0 };
    const v = checkSession(box, renewed!.cookie, scopeOf("crm"), rule, clock.t);
    if (!v.ok) throw new Error(v.reason);
    // A renewal moves the idle clock only: it must never stretch a session past its end.
    expect([v.session.seen, v.session.iat, v.session.exp]).toEqual([clock.t, T0, T0 + 12 * HOUR]);
    // Renewed, it is used 59 minutes later without expiring, where the original cookie has.
    clock.t = T0 + 61_000 + 59 * 60_000;
    expect(allowed(await check(`${SESSION_COOKIE}=${renewed!.cookie}`)).subject).toBe("u-alice");
  });

  it("does not renew a session touched less than 60 s ago (each renewal costs a Set-Cookie)", async () => {
    const { check, clock } = control();
    const cookie = sessionCookie();
    clock.t = T0 + 59_999;
    expect(allowed(await check(cookie)).renewedSession).toBeUndefined();
  });

  it("loginFor gives the rule, the compiled login with its client secret opened, and the claims its rules ask for", () => {
    const found = control().access.loginFor("acme", "crm");
    expect(found).toBeDefined();
    expect(found!.rule).toBe("staff");
    expect(found!.login).toMatchObject({
      issuer: ISSUER,
      clientId: CLIENT_ID,
      clientSecret: "s3cret",
      scopes: ["openid", "email", "profile"],
      allowedEmailDomains: ["acme.com"],
      idleMs: HOUR,
      maxMs: 12 * HOUR,
    });
    expect(Object.keys(found!.login.claims)).toEqual(["groups"]);
    expect(found!.claimRules.map((c) => Object.keys(c))).toEqual([["groups"]]);
  });

  it("loginFor is undefined for a target without login, another tenant, or a secret sealed with another key", () => {
    const { access } = control();
    expect(access.loginFor("acme", "wiki")).toBeUndefined();
    expect(access.loginFor("acme", "nowhere")).toBeUndefined();
    expect(access.loginFor("globex", "crm")).toBeUndefined();
    const otherKey = createAccessControl({
      policyOf: () => storedPolicy(createSecretBox([key()])),
      checkClientKey: () => ({ ok: false, reason: "unknown" }),
      verifyJwt: () => {
        throw new Error("no");
      },
      secrets: box,
      now: () => T0,
    });
    expect(otherKey.loginFor("acme", "crm")).toBeUndefined();
  });

  it("fails closed without secrets: the login rule refuses every request as policy_unusable", async () => {
    const { access, check } = control({});
    for (const cookie of [undefined, sessionCookie()]) {
      const d = denied(await check(cookie));
      expect([d.reason, d.error.kind, d.rule]).toEqual(["policy_unusable", "internal", "staff"]);
      expect(d.signIn).toBeUndefined();
    }
    expect(access.loginFor("acme", "crm")).toBeUndefined();
    // Only the rule that cannot compile refuses (compile-policy.ts): the policy's other rules go on working.
    expect(allowed(await check(undefined, { target: "wiki" })).rule).toBe("open");
  });
});
