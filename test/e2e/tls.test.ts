import { readFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { connect as http2Connect } from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTestPki, type TestPki } from "../helpers/certs.js";
import { startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { type FerryProcess, startConnectorProcess } from "../helpers/processes.js";
import { h2request } from "../helpers/http.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { closed, nextMessage, openWebSocket, startWebSocketTarget, type WebSocketTarget } from "../helpers/websocket-targets.js";

let pki: TestPki;
let relay: TestRelay;
let target: TestTarget;
let connector: FerryProcess;
let chat: WebSocketTarget;

beforeAll(async () => {
  pki = makeTestPki();
  target = await startTestTarget();
  chat = await startWebSocketTarget();
  relay = await startTestRelay({ tlsCert: pki.cert, tlsKey: pki.key, ca: pki.ca });
  const key = await relay.tenantWithKey("acme");
  // The connector trusts the test CA the standard Node way.
  connector = startConnectorProcess(relay.url, key, { app: target.url, chat: chat.url }, { env: { NODE_EXTRA_CA_CERTS: pki.ca } });
});

afterAll(async () => {
  await connector?.stop();
  await relay?.close();
  await target?.close();
  await chat?.close();
});

describe("TLS", () => {
  it("serves tunnels over TLS with HTTP/2 negotiated by ALPN", async () => {
    expect(relay.url.startsWith("https://")).toBe(true);
    await connector.waitForCount("tunnel connected", 2);
    const res = await fetch(`${relay.url}/healthz`).catch(() => undefined);
    expect(res).toBeUndefined(); // fetch here does not trust the test CA; the tunnel above did
  });

  it("serves HTTP/1.1 clients over TLS", async () => {
    const ca = readFileSync(pki.ca);
    const body = await new Promise<string>((resolve, reject) => {
      httpsRequest(`${relay.url}/relay/acme/app/echo`, { method: "POST", ca }, (res) => {
        let text = `${res.statusCode}:`;
        res.on("data", (d) => (text += d));
        res.on("end", () => resolve(text));
      })
        .on("error", reject)
        .end("hello over https");
    });
    expect(body).toBe("200:hello over https");
  });

  it("serves HTTP/2 clients over TLS", async () => {
    const session = http2Connect(relay.url, { ca: readFileSync(pki.ca) });
    try {
      const res = await h2request(session, "/relay/acme/app/echo", { method: "POST", body: "hello over h2" });
      expect(res.status).toBe(200);
      expect(res.body).toBe("hello over h2");
      expect(session.alpnProtocol).toBe("h2");
    } finally {
      session.close();
    }
  });

  it("carries WebSockets over TLS (wss://)", async () => {
    await connector.waitForCount("tunnel connected", 2);
    const ws = await openWebSocket(`${relay.url.replace(/^https/, "wss")}/relay/acme/chat/secure`, { ca: readFileSync(pki.ca) });
    ws.send("over tls");
    expect((await nextMessage(ws)).data.toString()).toBe("over tls");
    ws.close(1000, "done");
    expect(await closed(ws)).toEqual({ code: 1000, reason: "done" });
  });

  it("refuses clients that do not trust the certificate", async () => {
    const err = await fetch(`${relay.url}/healthz`).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
  });
});
