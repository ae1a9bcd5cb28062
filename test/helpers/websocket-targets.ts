import { spawn, type ChildProcess } from "node:child_process";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createInterface } from "node:readline";
import { WebSocket, WebSocketServer } from "ws";

/** What the WebSocket echo target saw of one connection. */
export interface SeenSocket {
  url: string;
  headers: IncomingMessage["headers"];
  protocol: string;
  /** Close code and reason the client sent, once closed. */
  closed?: { code: number; reason: string };
  /** Payloads of the pings the client sent. */
  pings: string[];
  socket: WebSocket;
}

export interface WebSocketTarget {
  /** http://127.0.0.1:PORT */
  url: string;
  seen: SeenSocket[];
  /** Open connections right now. */
  readonly open: number;
  close(): Promise<void>;
}

/**
 * A WebSocket echo server written with `ws`: echoes text and binary messages
 * as they came; "close CODE REASON" makes it close with that code; "flood N"
 * makes it send N MiB in 1 MiB binary messages. Requests to /forbidden get a
 * plain 403 instead of a 101; other plain HTTP requests get 426.
 */
export async function startWebSocketTarget(): Promise<WebSocketTarget> {
  const seen: SeenSocket[] = [];
  let open = 0;
  const server: Server = createServer((_req, res) => {
    res.writeHead(426, { "content-type": "text/plain", upgrade: "websocket" });
    res.end("websocket only");
  });
  const wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (protocols) => (protocols.has("chat.v2") ? "chat.v2" : [...protocols][0] ?? false),
  });
  server.on("upgrade", (req, socket, head) => {
    if (req.url?.startsWith("/forbidden")) {
      socket.end("HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: 19\r\nconnection: close\r\n\r\n{\"error\":\"go away\"}");
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const s: SeenSocket = { url: req.url ?? "", headers: req.headers, protocol: ws.protocol, pings: [], socket: ws };
      seen.push(s);
      open++;
      ws.on("ping", (data) => s.pings.push(data.toString()));
      ws.on("close", (code, reason) => {
        open--;
        s.closed = { code, reason: reason.toString() };
      });
      ws.on("message", (data, isBinary) => {
        const text = isBinary ? "" : data.toString();
        const close = /^close (\d+) ?(.*)$/.exec(text);
        const flood = /^flood (\d+)$/.exec(text);
        if (close) ws.close(Number(close[1]), close[2]);
        else if (flood) for (let i = 0; i < Number(flood[1]); i++) ws.send(Buffer.alloc(1024 * 1024, i % 251));
        else ws.send(data, { binary: isBinary });
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    get open() {
      return open;
    },
    async close() {
      for (const client of wss.clients) client.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

const PYTHON_ECHO = `
import asyncio, sys
import websockets

async def echo(ws, path):
    async for message in ws:
        if message == "close":
            await ws.close(4002, "python says bye")
            return
        await ws.send(message)

async def main():
    async with websockets.serve(echo, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        await asyncio.Future()

asyncio.run(main())
`;

/** Debian's python3-websockets as an echo server nobody here wrote ("close" closes with 4002). */
export async function startPythonWebSocketEcho(): Promise<{ url: string; close(): Promise<void> }> {
  const child: ChildProcess = spawn("/usr/bin/python3", ["-c", PYTHON_ECHO], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<string>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`python3 websockets echo exited with ${code} (is python3-websockets installed?)`)));
    createInterface({ input: child.stdout! }).once("line", resolve);
  });
  return {
    url: `http://127.0.0.1:${port.trim()}`,
    async close() {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill();
      await exited;
    },
  };
}

/** Opens a WebSocket and resolves once it is open (rejects with the HTTP status when the server refuses). */
export function openWebSocket(url: string, options: ConstructorParameters<typeof WebSocket>[2] & { protocols?: string[] } = {}): Promise<WebSocket> {
  const ws = new WebSocket(url, options.protocols, options);
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve(ws));
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c));
      res.on("end", () => reject(Object.assign(new Error(`refused with ${res.statusCode}`), { status: res.statusCode, body, headers: res.headers })));
    });
    ws.once("error", reject);
  });
}

/** The next message on a WebSocket. */
export function nextMessage(ws: WebSocket): Promise<{ data: Buffer; binary: boolean }> {
  return new Promise((resolve, reject) => {
    const onClose = () => reject(new Error("closed before a message came"));
    ws.once("message", (data, binary) => {
      ws.off("close", onClose);
      resolve({ data: Buffer.isBuffer(data) ? data : Buffer.concat(data as Buffer[]), binary });
    });
    ws.once("close", onClose);
  });
}

/** Resolves with the close code and reason once the WebSocket is closed. */
export function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve({ code: 1006, reason: "" });
  return new Promise((resolve) => ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() })));
}
