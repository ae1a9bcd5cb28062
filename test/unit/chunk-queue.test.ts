import { describe, expect, it } from "vitest";
import { ChunkQueue } from "../../core/exchange/chunk-queue.js";
import { fuzzSeed, rng } from "../helpers/fuzz.js";

function drain(q: ChunkQueue): Buffer {
  const parts: Uint8Array[] = [];
  for (let c = q.shift(); c; c = q.shift()) parts.push(c);
  return Buffer.concat(parts);
}

describe("ChunkQueue", () => {
  it("keeps a window of one-byte chunks in a few dozen objects, bytes and order intact", () => {
    const q = new ChunkQueue();
    const expected = Buffer.alloc(512 * 1024);
    for (let i = 0; i < expected.length; i++) {
      expected[i] = i & 0xff;
      q.push(Buffer.from([i & 0xff]));
    }
    expect(q.bytes).toBe(expected.length);
    // 16 as they came, then 16 KiB buffers: not half a million objects.
    expect(q.length).toBeLessThan(16 + expected.length / (12 * 1024));
    expect(drain(q).equals(expected)).toBe(true);
    expect(q.bytes).toBe(0);
    expect(q.retained).toBe(0);
  });

  it("copies views out once they keep much more alive than they hold", () => {
    const q = new ChunkQueue();
    // Each 64 KiB chunk a view into its own 1.25 MiB message: 8 of them would keep 10 MiB alive.
    const expected: Buffer[] = [];
    for (let i = 0; i < 8; i++) {
      const message = Buffer.alloc(1280 * 1024, i + 1);
      const chunk = message.subarray(1000, 1000 + 64 * 1024);
      expected.push(Buffer.from(chunk));
      q.push(chunk);
      expect(q.retained).toBeLessThanOrEqual(2 * q.bytes + 2 * 1024 * 1024);
    }
    expect(drain(q).equals(Buffer.concat(expected))).toBe(true);
  });

  it("leaves views that share their message alone (a normal bulk batch stays zero-copy)", () => {
    const q = new ChunkQueue();
    const message = Buffer.alloc(1024 * 1024 + 400);
    const chunks = Array.from({ length: 8 }, (_, i) => message.subarray(100 + i * 65536, 100 + (i + 1) * 65536));
    for (const c of chunks) q.push(c);
    for (const c of chunks) expect(q.shift()).toBe(c);
  });

  it("keeps bytes and order through any mix of sizes, views and shifts", () => {
    const r = rng(fuzzSeed("chunk queue"));
    const backing = Buffer.from(r.bytes(256 * 1024));
    for (let round = 0; round < 200; round++) {
      const q = new ChunkQueue();
      const pushed: Uint8Array[] = [];
      const taken: Uint8Array[] = [];
      for (let i = 0; i < 300; i++) {
        if (r.chance(0.6)) {
          const n = r.pick([0, 1, 7, 100, 4096, 4097, 20_000]);
          const at = r.int(backing.length - n);
          const chunk = r.chance(0.5) ? backing.subarray(at, at + n) : Buffer.from(backing.subarray(at, at + n));
          pushed.push(Buffer.from(chunk));
          q.push(chunk);
        } else {
          const c = q.shift();
          if (c) taken.push(Buffer.from(c));
        }
        if (q.retained < q.bytes) expect.fail(`retained ${q.retained} < bytes ${q.bytes}`);
      }
      taken.push(drain(q));
      expect(Buffer.concat(taken).equals(Buffer.concat(pushed))).toBe(true);
    }
  });
});
