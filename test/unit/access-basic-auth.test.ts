import { create } from "@bufbuild/protobuf";
import { beforeAll, describe, expect, it } from "vitest";
import { BasicUserSchema } from "../../gen/ferry/access/v1/access_policy_pb.js";
import {
  type BasicVerifier,
  createBasicVerifier,
  createScryptGate,
  hashPassword,
  parseBasicAuthorization,
  parsePasswordHash,
} from "../../services/access/basic-auth.js";

const basic = (text: string) => `Basic ${Buffer.from(text, "utf8").toString("base64")}`;
const PASSWORD = "correct horse battery staple";
let hash: string;

beforeAll(async () => {
  hash = await hashPassword(PASSWORD);
});

function verifier(opts: { maxConcurrent?: number; maxWaiting?: number; now?: () => number } = {}) {
  const gate = createScryptGate(opts);
  const users = [create(BasicUserSchema, { name: "plc-7", passwordHash: hash }), create(BasicUserSchema, { name: "jörg", passwordHash: hash })];
  return { gate, v: createBasicVerifier(users, gate, { now: opts.now ?? Date.now }) as BasicVerifier };
}

describe("HTTP Basic", () => {
  it("hashes as scrypt$32768$8$1$<16-byte salt>$<32-byte hash>, with a new salt each time", async () => {
    const parsed = parsePasswordHash(hash);
    expect(hash).toMatch(/^scrypt\$32768\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
    expect(typeof parsed !== "string" && [parsed.N, parsed.r, parsed.p, parsed.salt.length, parsed.hash.length]).toEqual([32768, 8, 1, 16, 32]);
    expect(await hashPassword(PASSWORD)).not.toBe(hash);
  });

  it.each([
    ["the right password", "plc-7", PASSWORD, "ok"],
    ["a wrong password", "plc-7", "Correct horse battery staple", "invalid"],
    ["an empty password", "plc-7", "", "invalid"],
    ["an unknown user with the right password", "plc-8", PASSWORD, "invalid"],
    ["a user name in UTF-8", "jörg", PASSWORD, "ok"],
  ])("%s: %s", async (_name, user, password, want) => {
    const { v } = verifier();
    expect(await v.verify({ user, password })).toBe(want);
  });

  it("costs an unknown user one scrypt run too (timing tells no user names)", async () => {
    const { gate, v } = verifier();
    const pending = v.verify({ user: "nobody", password: "x" });
    // A turn of the event loop later it is still running: a real scrypt run on the thread pool, not an early "no".
    await new Promise(setImmediate);
    expect(gate.running).toBe(1);
    expect(await pending).toBe("invalid");
    expect(gate.running).toBe(0);
  });

  it("remembers credentials that verified for a while, and only those", async () => {
    let now = 0;
    const { gate, v } = verifier({ now: () => now });
    expect(await v.verify({ user: "plc-7", password: PASSWORD })).toBe("ok");
    const again = v.verify({ user: "plc-7", password: PASSWORD });
    expect(gate.running).toBe(0); // no scrypt run
    expect(await again).toBe("ok");
    now = 5 * 60_000 + 1;
    const later = v.verify({ user: "plc-7", password: PASSWORD });
    expect(gate.running).toBe(1); // the cache has let go
    expect(await later).toBe("ok");
    await v.verify({ user: "plc-7", password: "wrong" });
    const wrongAgain = v.verify({ user: "plc-7", password: "wrong" });
    expect(gate.running).toBe(1); // a failure is checked afresh every time
    expect(await wrongAgain).toBe("invalid");
  });

  it("runs scrypt once for the same credentials arriving together", async () => {
    const { gate, v } = verifier();
    const all = Array.from({ length: 6 }, () => v.verify({ user: "plc-7", password: PASSWORD }));
    expect(gate.running + gate.waiting).toBe(1);
    expect(await Promise.all(all)).toEqual(Array(6).fill("ok"));
  });

  it("refuses with busy beyond the runs and waiting places the gate has", async () => {
    const { gate, v } = verifier({ maxConcurrent: 1, maxWaiting: 1 });
    const running = v.verify({ user: "plc-7", password: "a" });
    const waiting = v.verify({ user: "plc-7", password: "b" });
    expect([gate.running, gate.waiting]).toEqual([1, 1]);
    expect(await v.verify({ user: "plc-7", password: "c" })).toBe("busy");
    expect(await Promise.all([running, waiting])).toEqual(["invalid", "invalid"]);
    expect([gate.running, gate.waiting]).toEqual([0, 0]);
    expect(await v.verify({ user: "plc-7", password: PASSWORD })).toBe("ok"); // free again
  });

  it.each([
    ["no header", undefined, undefined],
    ["a bearer", "Bearer abc", undefined],
    ["Basicx", "Basicx abc", undefined],
    ["user and password", basic("plc-7:pw"), { user: "plc-7", password: "pw" }],
    ["a lower-case scheme", `basic ${Buffer.from("a:b").toString("base64")}`, { user: "a", password: "b" }],
    ["a colon in the password", basic("a:b:c"), { user: "a", password: "b:c" }],
    ["an empty password", basic("a:"), { user: "a", password: "" }],
    ["UTF-8", basic("jörg:pässword"), { user: "jörg", password: "pässword" }],
    ["no colon", basic("plc-7"), "malformed"],
    ["no user", basic(":pw"), "malformed"],
    ["not base64", "Basic !!!!", "malformed"],
    ["nothing after the scheme", "Basic", "malformed"],
    ["base64 with junk after it", `Basic ${Buffer.from("a:b").toString("base64")} x`, "malformed"],
    ["over-long", `Basic ${"A".repeat(5000)}`, "malformed"],
  ])("reads %s", (_name, header, want) => {
    expect(parseBasicAuthorization(header)).toEqual(want);
  });

  it.each([
    ["another scheme", "bcrypt$12$abc"],
    ["too few fields", "scrypt$32768$8$1$abc"],
    ["N not a power of two", `scrypt$30000$8$1$${"A".repeat(22)}$${"A".repeat(43)}`],
    ["p too high", `scrypt$32768$8$9$${"A".repeat(22)}$${"A".repeat(43)}`],
    ["over 64 MiB", `scrypt$131072$8$1$${"A".repeat(22)}$${"A".repeat(43)}`],
    ["a leading zero", `scrypt$032768$8$1$${"A".repeat(22)}$${"A".repeat(43)}`],
    ["padding in base64url", `scrypt$32768$8$1$${"A".repeat(22)}==$${"A".repeat(43)}`],
  ])("refuses a stored hash with %s", (_name, text) => {
    expect(typeof parsePasswordHash(text)).toBe("string");
  });
});
