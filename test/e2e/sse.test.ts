import { createServer, request as httpRequest, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { h2c } from "../helpers/http.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";

// Server-Sent Events must never be buffered: the target below sends its first event and then
// waits for the test to say "go", so the first event can only reach the client unbuffered.

let relay: TestRelay;
let connector: Connector;
let server: ReturnType<typeof createServer>;
/** Streams waiting for "go", by request path. */
const waiting = new Map<string, ServerResponse>();
let streamsEnded = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    res.write(`id: 1\nevent: hello\ndata: first event of ${req.url}\n\n`);
    waiting.set(req.url!, res);
    res.on("finish", () => streamsEnded++);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  relay = await startTestRelay();
  const key = await relay.tenantWithKey("acme");
  connector = await startTestConnector(relay.url, key, { events: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
});

afterAll(async () => {
  await connector?.stop();
  await relay?.close();
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
});

/** Lets the target finish the stream at `path`: two more events, then the end. */
function release(path: string): void {
  const res = waiting.get(path)!;
  res.write("id: 2\ndata: second\n\n");
  res.end("id: 3\ndata: last\n\n");
}

describe("Server-Sent Events", () => {
  it("delivers the first event over HTTP/1.1 while the target is still writing", async () => {
    const chunks: string[] = [];
    const done = new Promise<{ status: number; type: string | undefined }>((resolve, reject) => {
      const req = httpRequest(`${relay.url}/relay/acme/events/stream-1`, { headers: { accept: "text/event-stream" } }, (res) => {
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          chunks.push(c);
          // The target is still waiting for us: nothing but an unbuffered path could have brought this.
          if (chunks.length === 1) {
            expect(streamsEnded).toBe(0);
            release("/stream-1");
          }
        });
        res.on("end", () => resolve({ status: res.statusCode!, type: res.headers["content-type"] }));
      });
      req.on("error", reject);
      req.end();
    });
    expect(await done).toEqual({ status: 200, type: "text/event-stream" });
    expect(chunks[0]).toBe("id: 1\nevent: hello\ndata: first event of /stream-1\n\n");
    expect(chunks.join("")).toBe("id: 1\nevent: hello\ndata: first event of /stream-1\n\nid: 2\ndata: second\n\nid: 3\ndata: last\n\n");
  });

  it("delivers the first event over HTTP/2 while the target is still writing", async () => {
    const session = h2c(relay.url);
    try {
      const stream = session.request({ ":path": "/relay/acme/events/stream-2", accept: "text/event-stream" });
      stream.setEncoding("utf8");
      const first = await new Promise<string>((resolve) => stream.once("data", resolve));
      expect(first).toBe("id: 1\nevent: hello\ndata: first event of /stream-2\n\n");
      expect(waiting.get("/stream-2")!.writableEnded).toBe(false);
      let rest = "";
      stream.on("data", (c: string) => (rest += c));
      const ended = new Promise((resolve) => stream.once("end", resolve));
      release("/stream-2");
      await ended;
      expect(rest).toBe("id: 2\ndata: second\n\nid: 3\ndata: last\n\n");
    } finally {
      session.close();
    }
  });

  it("tells the target when the client stops listening", async () => {
    const req = httpRequest(`${relay.url}/relay/acme/events/stream-3`);
    const res = await new Promise<import("node:http").IncomingMessage>((resolve) => {
      req.on("response", resolve);
      req.end();
    });
    await new Promise((resolve) => res.once("data", resolve));
    const target = waiting.get("/stream-3")!;
    const closed = new Promise((resolve) => target.once("close", resolve));
    req.destroy();
    await closed;
    expect(target.writableEnded).toBe(false); // cut off by the client's departure, not finished
  });
});
