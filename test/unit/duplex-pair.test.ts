import { once } from "node:events";
import type { Duplex } from "node:stream";
import { describe, expect, it } from "vitest";
import { duplexPair } from "../../services/http/duplex-pair.js";

// The in-memory connection a replay talks to the gateway over: it must behave like the two ends of a TCP connection.

/** Everything until the end, by events: a for-await loop would destroy the stream (and so the pair) when it ends. */
const readAll = (s: Duplex): Promise<string> =>
  new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on("data", (chunk: Buffer) => parts.push(chunk));
    s.once("end", () => resolve(Buffer.concat(parts).toString()));
    s.once("error", reject);
  });

describe("duplexPair", () => {
  it("carries bytes both ways, in order, binary included", async () => {
    const [a, b] = duplexPair();
    const fromA = once(b, "data");
    a.write(Buffer.from([0, 1, 2, 255]));
    expect([...((await fromA)[0] as Buffer)]).toEqual([0, 1, 2, 255]);
    const fromB = once(a, "data");
    b.write("pong");
    expect(((await fromB)[0] as Buffer).toString()).toBe("pong");
    a.destroy();
  });

  it("ends the other side's reading when one side ends, and lets the other still write back (half-close)", async () => {
    const [a, b] = duplexPair();
    const got = readAll(b);
    a.write("GET / HTTP/1.1\r\n");
    a.end("\r\n");
    expect(await got).toBe("GET / HTTP/1.1\r\n\r\n");
    expect(a.destroyed).toBe(false);
    const answer = readAll(a);
    b.end("HTTP/1.1 204 No Content\r\n\r\n");
    expect(await answer).toBe("HTTP/1.1 204 No Content\r\n\r\n");
  });

  it("destroys the other end when one is destroyed, from either side", async () => {
    for (const which of [0, 1] as const) {
      const pair = duplexPair();
      const other = pair[1 - which]!;
      const closed = once(other, "close");
      pair[which].destroy();
      await closed;
      expect(other.destroyed).toBe(true);
    }
  });

  it("passes a destroy's error to the end destroyed, not to the other (as a reset connection would not)", async () => {
    const [a, b] = duplexPair();
    const aError = once(a, "error");
    const bClosed = once(b, "close");
    let bError: unknown;
    b.on("error", (err) => (bError = err));
    a.destroy(new Error("boom"));
    expect(((await aError)[0] as Error).message).toBe("boom");
    await bClosed;
    expect(bError).toBeUndefined();
  });

  it("refuses writes on an end destroyed by its peer", async () => {
    const [a, b] = duplexPair();
    a.destroy();
    await once(b, "close");
    const err = await new Promise<Error | null | undefined>((resolve) => b.write("late", resolve));
    expect(err).toBeInstanceOf(Error);
  });

  it("carries a megabyte written in many chunks intact", async () => {
    const [a, b] = duplexPair();
    const got = readAll(b);
    const chunk = "0123456789abcdef".repeat(64);
    for (let i = 0; i < 1024; i++) a.write(chunk);
    a.end();
    const text = await got;
    expect(text.length).toBe(1024 * 1024);
    expect(text.slice(-16)).toBe("0123456789abcdef");
    b.destroy();
  });
});
