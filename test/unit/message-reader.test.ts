import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createMessageReader, type FramingProblem } from "../../services/http/message-reader.js";

// Reassembling gRPC-framed messages from chunks cut anywhere: what a peer link's socket and a tunnel's DATA frames give.

function framed(body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

function reader(maxBytes = 1 << 20) {
  const messages: Buffer[] = [];
  const problems: FramingProblem[] = [];
  const r = createMessageReader({ maxBytes, onMessage: (m) => messages.push(Buffer.from(m)), onProblem: (p) => problems.push(p) });
  return { r, messages, problems };
}

describe("message reader", () => {
  it("gives each message once and in order, however the bytes are cut", () => {
    const bodies = [randomBytes(0), randomBytes(1), randomBytes(4), randomBytes(5), randomBytes(70_000), randomBytes(300)];
    const wire = Buffer.concat(bodies.map(framed));
    for (const cut of [1, 2, 3, 5, 7, 4096, 65_536, wire.length]) {
      const { r, messages, problems } = reader();
      for (let off = 0; off < wire.length; off += cut) r.push(wire.subarray(off, off + cut));
      expect(problems).toEqual([]);
      expect(messages.map((m) => m.toString("hex"))).toEqual(bodies.map((b) => b.toString("hex")));
    }
  });

  it("hands a message that lies in one chunk on as a view, without copying; small chunks are copied together", () => {
    const wire = framed(randomBytes(4096));
    const seen: Buffer[] = [];
    const r = createMessageReader({ maxBytes: 1 << 20, onMessage: (m) => seen.push(m), onProblem: () => {} });
    r.push(wire);
    expect(seen[0]!.buffer).toBe(wire.buffer);
    // A message in 100-byte chunks (copied together once many are pending) comes out whole.
    const small = framed(randomBytes(5000));
    const chunks = Array.from({ length: 51 }, (_, i) => small.subarray(i * 100, i * 100 + 100));
    for (const c of chunks) r.push(c);
    expect(seen[1]!.equals(small.subarray(5))).toBe(true);
    expect(chunks.some((c) => c.buffer === seen[1]!.buffer)).toBe(false);
  });

  it("refuses a message over the limit on its header, before its bytes arrive, and takes nothing after", () => {
    const { r, messages, problems } = reader(10);
    r.push(framed(Buffer.alloc(10)));
    const head = Buffer.alloc(5);
    head.writeUInt32BE(11, 1);
    r.push(head);
    r.push(framed(Buffer.alloc(1)));
    expect(messages).toHaveLength(1);
    expect(problems).toEqual([{ kind: "too_large", length: 11, limit: 10 }]);
  });

  it("refuses a compressed message (or anything not in the framing, such as an HTTP/2 preface)", () => {
    const { r, problems } = reader();
    r.push(Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
    expect(problems).toEqual([{ kind: "compressed" }]);
  });

  it("raises its limit for what follows a handshake", () => {
    const messages: Buffer[] = [];
    const problems: FramingProblem[] = [];
    const rr = createMessageReader({
      maxBytes: 4,
      onMessage: (m) => {
        messages.push(Buffer.from(m));
        rr.setLimit(1000);
      },
      onProblem: (p) => problems.push(p),
    });
    rr.push(Buffer.concat([framed(Buffer.from("helo")), framed(Buffer.alloc(900))]));
    expect(messages.map((m) => m.length)).toEqual([4, 900]);
    expect(problems).toEqual([]);
  });

  it("stops inside a message's callback: the rest of the chunk is dropped", () => {
    const seen: number[] = [];
    const r = createMessageReader({
      maxBytes: 100,
      onMessage: (m) => {
        seen.push(m.length);
        r.stop();
      },
      onProblem: () => {},
    });
    r.push(Buffer.concat([framed(Buffer.alloc(1)), framed(Buffer.alloc(2))]));
    r.push(framed(Buffer.alloc(3)));
    expect(seen).toEqual([1]);
  });
});
