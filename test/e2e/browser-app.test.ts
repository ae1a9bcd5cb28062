import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";
import type { Connector } from "../../clients/connector/connector.js";
import { launchChromium } from "../helpers/browser.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";

// An on-prem web app as a real browser uses it through host routing: absolute links to root
// context paths (/webclient, /rest) and a WebSocket at /ws/client/websocket, all at
// http://app.acme.relay.test:PORT/ (Chromium maps *.relay.test to 127.0.0.1).
const INDEX = `<!doctype html><html><head><title>loading</title><script src="/webclient/app.js"></script></head><body></body></html>`;
const APP = `
(async () => {
  const data = await (await fetch("/rest/data.json")).json();
  const ws = new WebSocket(location.origin.replace(/^http/, "ws") + "/ws/client/websocket");
  ws.onopen = () => ws.send("hello from " + data.name);
  ws.onmessage = (e) => {
    document.title = "echo: " + e.data;
    ws.close(4000, "page done");
  };
  ws.onclose = (e) => (document.title += " | closed " + e.code);
})();
`;

let relay: TestRelay;
let connector: Connector;
let app: Server;
let browser: Browser;
const seen: Array<{ url: string; headers: IncomingHttpHeaders }> = [];
let wsClosed: { code: number; reason: string } | undefined;

beforeAll(async () => {
  app = createServer((req, res) => {
    seen.push({ url: req.url!, headers: req.headers });
    if (req.url === "/") res.writeHead(200, { "content-type": "text/html" }).end(INDEX);
    else if (req.url === "/webclient/app.js") res.writeHead(200, { "content-type": "text/javascript" }).end(APP);
    else if (req.url === "/rest/data.json") res.writeHead(200, { "content-type": "application/json" }).end('{"name":"the CRM"}');
    else res.writeHead(404).end();
  });
  const wss = new WebSocketServer({ noServer: true });
  app.on("upgrade", (req, socket, head) => {
    seen.push({ url: req.url!, headers: req.headers });
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on("message", (m) => ws.send(`echo of ${m.toString()}`));
      ws.on("close", (code, reason) => (wsClosed = { code, reason: reason.toString() }));
    });
  });
  await new Promise<void>((resolve) => app.listen(0, "127.0.0.1", resolve));
  relay = await startTestRelay({ baseDomain: "relay.test" });
  const key = await relay.tenantWithKey("acme");
  connector = await startTestConnector(relay.url, key, {
    app: { url: `http://127.0.0.1:${(app.address() as AddressInfo).port}`, hostHeader: "original" },
  });
  browser = await launchChromium(["--host-resolver-rules=MAP *.relay.test 127.0.0.1"]);
});

afterAll(async () => {
  await browser?.close();
  await connector?.stop();
  await relay?.close();
  app?.closeAllConnections();
  await new Promise((resolve) => app?.close(resolve));
});

describe("a web app in a real browser, by host name", () => {
  it("loads with its absolute links and talks over its WebSocket", async () => {
    const host = `app.acme.relay.test:${relay.server.port}`;
    const page = await browser.newPage();
    await page.goto(`http://${host}/`);
    await page.waitForFunction('document.title.includes("closed")');
    expect(await page.title()).toBe("echo: echo of hello from the CRM | closed 4000");
    const paths = seen.map((s) => s.url).filter((u) => u !== "/favicon.ico"); // the browser's own idea
    expect(paths).toEqual(["/", "/webclient/app.js", "/rest/data.json", "/ws/client/websocket"]);
    // The app saw the name the browser used, as configured (hostHeader: original).
    expect(seen.every((s) => s.headers.host === host)).toBe(true);
    expect(seen.at(-1)!.headers.origin).toBe(`http://${host}`);
    expect(wsClosed).toEqual({ code: 4000, reason: "page done" });
    await page.close();
  });
});
