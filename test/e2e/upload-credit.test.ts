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

beforeAll(async () => {
  target = createServer((req, res) => {
    const hash = createHash("sha256");
    let bytes = 0;
    req.on("data", (c: Buffer) => {
      bytes += c.length;
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
