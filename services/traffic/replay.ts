import { create } from "@bufbuild/protobuf";
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { type CapturedExchange, type ReplayExchangeResponse, ReplayExchangeResponseSchema } from "../../gen/ferry/admin/v1/admin_service_pb.js";
import { randomHex } from "../../core/exchange/ids.js";
import { FerryError } from "../../core/errors.js";
import { duplexPair } from "../http/duplex-pair.js";
import type { NodeRequest } from "../http/http-error.js";
import type { LiveTraffic } from "./live-traffic.js";
import { bodyHead } from "./body-head.js";
import { REDACTED, redactedFields } from "./redact.js";

export interface Replayer {
  /** The admin token id of a replayed request (it came in through replay() on this node); undefined for any other. */
  replayOf(req: NodeRequest): string | undefined;
  /** Sends a captured request through this node's gateway again, as the admin it is, and returns the answer's start. */
  replay(captured: CapturedExchange, tokenId: string, bodyBytes: number, signal: AbortSignal): Promise<ReplayExchangeResponse>;
}

/** Requests a replay may repeat without a confirm: they change nothing (RFC 9110 §9.2.1). */
export const SAFE_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS"]);
/** The connection is the replay's own: these describe that connection, or are set again by the gateway. */
const NOT_REPLAYED: ReadonlySet<string> = new Set([
  "host",
  "connection",
  "keep-alive",
  "transfer-encoding",
  "content-length",
  "upgrade",
  "te",
  "trailer",
  "expect",
  "x-request-id",
  "traceparent",
]);
/** A replay that takes longer is cut: it holds an admin call open. */
const REPLAY_TIMEOUT_MS = 60_000;

/**
 * Replays go through the relay's own request listener over an in-memory
 * connection: the same gateway, limits, capture and audit as any request,
 * with no address to reach and no TLS to get past. The connection is how the
 * gateway knows a replay (a socket only this module makes), so no header a
 * client could send makes a request one.
 */
export function createReplayer(listener: () => (req: IncomingMessage, res: ServerResponse) => void, live: LiveTraffic): Replayer {
  const bySocket = new WeakMap<Duplex, string>();
  // Never listens: it only parses what replay() writes into it.
  const server = createServer((req, res) => listener()(req, res));

  return {
    replayOf: (req) => ("stream" in req ? undefined : bySocket.get(req.socket)),
    async replay(captured, tokenId, bodyBytes, signal) {
      const s = captured.summary;
      if (!s) throw new FerryError("failed_precondition", "not_replayable", "the captured exchange has no summary");
      if (s.status === 101) throw new FerryError("failed_precondition", "not_replayable", "an upgraded connection (WebSocket) cannot be replayed");
      if (captured.requestBodyTruncated) {
        throw new FerryError("failed_precondition", "not_replayable", `the request body was longer than the capture kept (${captured.requestBody.length} bytes): it cannot be replayed`);
      }
      // Sending "[redacted]" where a password stood could do harm (change it, lock an account): no replay at all.
      if (Buffer.from(captured.requestBody).includes(REDACTED)) {
        throw new FerryError("failed_precondition", "not_replayable", "the capture redacted a credential in the request body: it cannot be replayed as it was");
      }
      const requestId = `replay-${randomHex(8)}`;
      const headers: Array<[string, string]> = [];
      // A credential the capture redacted is not sent again, neither as itself nor as "[redacted]".
      for (const h of captured.requestHeaders) if (!NOT_REPLAYED.has(h.name) && !h.value.includes(REDACTED)) headers.push([h.name, h.value]);
      headers.push(["host", "replay.invalid"], ["x-request-id", requestId], ["content-length", String(captured.requestBody.length)]);
      const query = replayQuery(captured.query);
      const path = `/relay/${s.tenant}/${s.target}${s.path}${query ? `?${query}` : ""}`;

      const deadline = AbortSignal.any([signal, AbortSignal.timeout(REPLAY_TIMEOUT_MS)]);
      const done = live.awaitRequest(requestId, deadline);
      done.catch(() => {});
      const [clientEnd, serverEnd] = duplexPair();
      bySocket.set(serverEnd, tokenId);
      server.emit("connection", serverEnd);
      try {
        const answer = await send(clientEnd, s.method, path, headers, captured.requestBody, bodyBytes, deadline);
        return create(ReplayExchangeResponseSchema, { ...answer, summary: await done });
      } finally {
        clientEnd.destroy();
      }
    },
  };
}

/** The query without the parameters a capture redacted: a replay sends no "[redacted]" as a value. */
function replayQuery(query: string): string {
  const marker = `=${encodeURIComponent(REDACTED)}`;
  return query
    .split("&")
    .filter((p) => p !== "" && !p.endsWith(marker))
    .join("&");
}

function send(
  socket: Duplex,
  method: string,
  path: string,
  headers: Array<[string, string]>,
  body: Uint8Array,
  bodyBytes: number,
  signal: AbortSignal,
): Promise<Pick<ReplayExchangeResponse, "responseHeaders" | "responseBody" | "responseBodyTruncated">> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ method, path, headers: headers.flat(), createConnection: () => socket as never, signal });
    req.on("error", (err) =>
      reject(signal.aborted ? new FerryError("deadline_exceeded", "replay_timeout", "the replay did not finish in time") : new FerryError("unavailable", "replay_failed", err.message)),
    );
    req.on("response", (res) => {
      const kept = bodyHead(bodyBytes);
      res.on("data", (chunk: Buffer) => kept.add(chunk));
      res.on("end", () => resolve({ responseHeaders: redactedFields(res.rawHeaders), responseBody: kept.body(), responseBodyTruncated: kept.truncated }));
      res.on("error", reject);
    });
    req.end(Buffer.from(body));
  });
}
