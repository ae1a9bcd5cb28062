import { connect as http2Connect } from "node:http2";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeTunnelMessage } from "../../core/exchange/tunnel-codec.js";
import type { Frame } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { HostileConnector } from "../helpers/hostile-connector.js";
import { request } from "../helpers/http.js";
import { startTestRelay, type TestRelay } from "../helpers/in-process.js";

// What a hostile connector can make the relay hold for a client that does not read: never much more than the
// exchange's window, however it packs its frames into tunnel messages.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
const MiB = 1024 * 1024;

let relay: TestRelay;
let key: string;

beforeAll(async () => {
  relay = await startTestRelay();
  key = await relay.tenantWithKey("acme");
});

afterAll(async () => {
  await relay?.close();
});

/** Bytes held in ArrayBuffers by this process (the relay and the test's own peers) once garbage is collected. */
function arrayBuffers(): number {
  gc();
  gc();
  return process.memoryUsage().arrayBuffers;
}

/** All memory this process holds once garbage is collected: JavaScript objects and ArrayBuffers. */
function heapAndBuffers(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/** An HTTP/2 client of the relay that never reads its responses; returns the exchange ids the connector saw. */
async function stalledClients(c: HostileConnector, n: number) {
  // Each stream is held to the client's 64 KiB window, so the relay must queue what the connector sends
  // (within the exchange's 512 KiB window).
  const session = http2Connect(relay.url);
  session.on("error", () => {});
  const ids: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const stream = session.request({ ":path": `/relay/acme/app/stalled-${i}` });
    stream.on("error", () => {});
    stream.pause();
    ids.push((await c.nextRequest(c.frames().length))!.id);
  }
  return { session, ids };
}

/** Sends 256 KiB of ordinary body per exchange: the client's window and the relay's socket buffer fill, its sink pauses. */
function fill(c: HostileConnector, ids: Uint8Array[]): void {
  for (const id of ids) {
    const frames = [HostileConnector.responseHead(id, 200, [["content-type", "application/octet-stream"]])];
    for (let i = 0; i < 4; i++) frames.push(HostileConnector.data(id, Buffer.alloc(64 * 1024, 1)));
    c.sendFrames(frames);
  }
}

/** Messages on one tunnel are handled in order: once this answer is through, the relay has read all before it. */
async function flushed(c: HostileConnector): Promise<void> {
  const marker = request(`${relay.url}/relay/acme/app/marker`);
  const m = await c.nextRequest(c.frames().length);
  c.respond(m!.id, 200, [], "done");
  expect((await marker).body.toString()).toBe("done");
}

/** One tunnel message holding `frames` plus `padding` bytes of an unknown field, which every decoder skips. */
function padded(frames: Frame[], padding: number): Buffer {
  const message = encodeTunnelMessage({ $typeName: "ferry.tunnel.v1.ConnectRequest", message: { case: "frames", value: { $typeName: "ferry.tunnel.v1.FrameBatch", frames } } });
  const len = Buffer.alloc(5);
  let n = padding;
  let i = 0;
  while (n >= 0x80) {
    len[i++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  len[i++] = n;
  // Field 15, wire type 2 (bytes): tag 0x7a.
  return Buffer.concat([message, Buffer.from([0x7a]), len.subarray(0, i), Buffer.alloc(padding)]);
}

describe("relay memory against a hostile connector", () => {
  it("one-byte chunks padded to 8 MiB messages do not keep the messages alive", async () => {
    const c = await HostileConnector.connect(relay.url, key);
    const EXCHANGES = 2;
    const { session, ids } = await stalledClients(c, EXCHANGES);
    const before = arrayBuffers();
    fill(c, ids);
    // Then 10 one-byte chunks per exchange, each alone in a message padded to almost 8 MiB (the tunnel's limit).
    for (let i = 0; i < 10; i++) {
      for (const id of ids) c.sendRaw(padded([HostileConnector.data(id, Buffer.from([i]))], 8 * MiB - 200));
    }
    await flushed(c);
    const growth = arrayBuffers() - before;
    // Today's code kept every padded message alive: 20 x 8 MiB. The windows allow 2 x 512 KiB.
    expect(growth).toBeLessThan(EXCHANGES * 512 * 1024 + 4 * MiB);
    session.destroy();
    c.destroy();
  }, 30_000);

  it("a window of one-byte chunks costs about the window, not an object per byte", async () => {
    const c = await HostileConnector.connect(relay.url, key);
    const { session, ids } = await stalledClients(c, 1);
    const id = ids[0]!;
    const before = heapAndBuffers();
    fill(c, ids);
    // 200,000 one-byte chunks, 2,000 to a message: within the 512 KiB window, all queued for a client that does not read.
    for (let m = 0; m < 100; m++) c.sendFrames(Array.from({ length: 2000 }, (_, i) => HostileConnector.data(id, Buffer.from([i & 0xff]))));
    await flushed(c);
    const growth = heapAndBuffers() - before;
    // Today's code queued 200,000 chunk objects (tens of MB); coalesced, they take the 200 KB they are.
    expect(growth).toBeLessThan(512 * 1024 + 4 * MiB);
    session.destroy();
    c.destroy();
  }, 30_000);
});
