import { createHash, randomBytes } from "node:crypto";
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { type NatsServer, startNatsServer } from "../helpers/nats-server.js";
import { eventually } from "../helpers/wait.js";

// A target that reads in small sips, behind two cluster nodes: credit for each upload comes back over NATS in
// small steps and the ingress keeps waiting for it. Every byte must arrive, in order, and each upload must end
// only after its last chunk.
let nats: NatsServer;
let relay: TestRelay;
let egress: TestRelay;
let connector: Connector;
let target: Server;
/** Body bytes the target has read, over all requests. */
let received = 0;

beforeAll(async () => {
  target = createServer((req, res) => {
    const hash = createHash("sha256");
    let bytes = 0;
    req.on("data", (c: Buffer) => {
      bytes += c.length;
      received += c.length;
      hash.update(c);
      // A slow reader: a short pause after every chunk.
      req.pause();
      setTimeout(() => req.resume(), 1);
    });
    req.on("end", () => res.end(JSON.stringify({ bytes, sha256: hash.digest("hex") })));
  });
  await new Promise<void>((r) => target.listen(0, "127.0.0.1", r));
  nats = await startNatsServer();
  [relay, egress] = await Promise.all([startTestRelay({ nats: { servers: [nats.url] } }), startTestRelay({ nats: { servers: [nats.url] } })]);
  const key = await egress.tenantWithKey("up");
  connector = await startTestConnector(egress.url, key, { sink: `http://127.0.0.1:${(target.address() as AddressInfo).port}` });
  await eventually(async () => (await upload(Buffer.from("ping"))).status === 200, "route through the other node");
});

afterAll(async () => {
  await connector?.stop();
  await Promise.all([relay?.close(), egress?.close()]);
  await nats?.close();
  target?.close();
});

function upload(body: Buffer): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${relay.url}/relay/up/sink/`, { method: "POST", headers: { "content-length": body.length } }, (res) => {
      let text = "";
      res.on("data", (c: Buffer) => (text += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode!, text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

it("delivers every byte of uploads that outrun the target, last chunk included", async () => {
  for (let i = 0; i < 8; i++) {
    const body = randomBytes(2 * 1024 * 1024 + i * 7_919);
    const { status, text } = await upload(body);
    expect(status).toBe(200);
    expect(JSON.parse(text)).toEqual({ bytes: body.length, sha256: createHash("sha256").update(body).digest("hex") });
  }
});

it("takes the client's body no faster than the target reads it: nothing piles up in the relay", async () => {
  // On a new connection (its first read is what the relay sniffs), the head together with the first chunk and the rest
  // as fast as the kernel takes it, as a script or curl would. Measured: 7.5 MiB ahead; 125 MiB before the fix. The relay
  // once kept reading such an upload into memory while the exchange waited for credit (170 MB of a 200 MB upload).
  const size = 128 * 1024 * 1024;
  const chunk = Buffer.alloc(1024 * 1024, 7);
  const before = received;
  let aheadAtFinish = -1;
  const status = await new Promise<number>((resolve, reject) => {
    const req = httpRequest(`${relay.url}/relay/up/sink/`, { method: "POST", agent: false, headers: { "content-length": size } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode!));
    });
    req.on("error", reject);
    // 'finish': the last byte is with the kernel, so all the rest is held between here and the target.
    req.on("finish", () => (aheadAtFinish = size - (received - before)));
    let sent = 0;
    const pump = () => {
      while (sent < size) {
        sent += chunk.length;
        if (!req.write(chunk)) return void req.once("drain", pump);
      }
      req.end();
    };
    pump();
  });
  expect(status).toBe(200);
  expect(received - before).toBe(size);
  // Socket buffers on three hops, the HTTP/2 windows and the exchange window (at most 16 MiB): far less than the body.
  expect(aheadAtFinish).toBeGreaterThanOrEqual(0);
  expect(aheadAtFinish).toBeLessThan(32 * 1024 * 1024);
});
