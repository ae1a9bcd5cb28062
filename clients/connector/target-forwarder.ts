import { Agent, type Dispatcher } from "undici";
import { type Header, type RequestHead, ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { msFromDuration } from "../sdk/duration.js";
import type { Exchange } from "../sdk/exchange.js";
import { endToEndHeaders, header, headersFromObject, toFlatList } from "../sdk/headers.js";
import type { Logger } from "../sdk/logger.js";
import type { TargetSpec } from "./connector-config.js";
import type { PreflightAnswer } from "./cors.js";
import { createH2Transport } from "./h2-transport.js";
import { forwardUpgrade } from "./upgrade-transport.js";

export interface TargetForwarder {
  /** Whether the connector serves this target. */
  has(name: string): boolean;
  /** Starts one exchange against its target; it runs until the response is sent or the exchange is reset. */
  forward(ex: Exchange, head: RequestHead): void;
  close(): Promise<void>;
}

/** One exchange, checked and ready for whichever transport reaches its target. */
export interface TargetRequest {
  target: TargetSpec;
  ex: Exchange;
  head: RequestHead;
  /** Base path + relay path + query. */
  path: string;
  /** End-to-end request headers, Host included when the target's setting asks for one. */
  headers: Header[];
  /** Applied to the response head's headers (the target's CORS policy). */
  decorate(headers: Header[]): Header[];
}

const DEFAULT_TIMEOUT_MS = 100_000;

/**
 * Sends exchanges to the configured targets: HTTP/1.1 with undici, HTTP/2
 * (h2c, or TLS with ALPN) with node:http2, upgrades over a raw HTTP/1.1
 * connection. The request URL is built from the target's own origin and base
 * path plus the relay-supplied path, which must start with "/": the relay can
 * choose a path below a target, never another host.
 */
export function createTargetForwarder(targets: readonly TargetSpec[], log: Logger): TargetForwarder {
  const byName = new Map(targets.map((t) => [t.name, t]));
  const agent = new Agent({ keepAliveTimeout: 30_000, connections: 256, allowH2: false });
  const h2 = createH2Transport(log);
  const http1 = (req: TargetRequest) => forwardHttp1(agent, req, log);

  return {
    has: (name) => byName.has(name),

    forward(ex, head) {
      const target = byName.get(head.target);
      if (!target) return ex.reset(ResetCode.REFUSED, `this connector has no target "${head.target}"`);
      const badPath = pathProblem(head.path);
      if (badPath) {
        log.warn({ target: head.target, path: head.path, problem: badPath }, "refused a request path from the relay");
        return ex.reset(ResetCode.PROTOCOL_ERROR, `request path refused by the connector: ${badPath}`);
      }
      // Filtered again here: even a compromised relay cannot set Host or per-hop fields.
      const headers = endToEndHeaders(toFlatList(head.headers), { upgrade: head.upgrade });
      const cors = target.cors;
      if (cors) {
        const answer = cors.preflight(head.method, headers);
        if (answer) return answerLocally(ex, head, answer);
      }
      const host = hostFor(target, head);
      if (host) headers.push(header("host", host));
      const req: TargetRequest = {
        target,
        ex,
        head,
        path: target.basePath + head.path + (head.query ? `?${head.query}` : ""),
        headers,
        decorate: cors ? (h) => cors.decorate(headers, h) : (h) => h,
      };
      if (head.upgrade) return forwardUpgrade(agent, req, log);
      if (target.transport === "http1") return http1(req);
      h2.forward(req, () => http1(req));
    },

    close: async () => {
      await Promise.all([agent.close(), h2.close()]);
    },
  };
}

/** The Host a target sees, or undefined for the default (the target URL's host and port). */
function hostFor(target: TargetSpec, head: RequestHead): string | undefined {
  switch (target.host.kind) {
    case "target":
      return undefined;
    case "original":
      return head.authority || undefined;
    case "fixed":
      return target.host.value;
  }
}

/** Answers without the target (a CORS preflight); the request had no body worth reading. */
function answerLocally(ex: Exchange, head: RequestHead, answer: PreflightAnswer): void {
  if (!head.endStream) ex.body.resume();
  const body = answer.body ? Buffer.from(answer.body) : undefined;
  const headers = body ? [...answer.headers, header("content-length", String(body.length))] : answer.headers;
  ex.sendResponseHead({ $typeName: "ferry.tunnel.v1.ResponseHead", status: answer.status, headers, endStream: !body });
  if (body) {
    ex.writeNow(body);
    ex.end();
  }
}

function forwardHttp1(agent: Agent, req: TargetRequest, log: Logger): void {
  const { target, ex, head } = req;
  agent.dispatch(
    {
      origin: target.origin,
      path: req.path,
      method: head.method as Dispatcher.HttpMethod,
      headers: toFlatList(req.headers),
      body: head.endStream ? null : ex.body,
      headersTimeout: msFromDuration(head.timeout) || DEFAULT_TIMEOUT_MS,
      // Long downloads and event streams may pause for as long as they like.
      bodyTimeout: 0,
    },
    responder(req, log),
  );
}

/**
 * Carries undici's answer into the exchange. undici pushes the body; when the
 * exchange has no credit for a chunk, undici is paused until it has, so a slow
 * client holds the target back instead of the connector buffering.
 */
function responder(req: TargetRequest, log: Logger): Dispatcher.DispatchHandler {
  const { ex, head } = req;
  let started = false;
  let failed = false;
  return {
    onRequestStart(controller) {
      // The relay reset the exchange (client gone, deadline): stop the target's request too.
      ex.onReset = (reset) => controller.abort(reset);
    },
    onResponseStart(_controller, statusCode, headers) {
      if (statusCode < 200) return; // 1xx interim answers stay on this hop
      started = true;
      const bodyless = head.method === "HEAD" || statusCode === 204 || statusCode === 304;
      ex.sendResponseHead({
        $typeName: "ferry.tunnel.v1.ResponseHead",
        status: statusCode,
        headers: req.decorate(headersFromObject(headers)),
        endStream: bodyless,
      });
    },
    onResponseData(controller, chunk) {
      if (ex.writeNow(chunk)) return;
      controller.pause();
      ex.write(chunk).then(
        () => controller.resume(),
        () => {}, // reset: onReset has aborted the request
      );
    },
    onResponseEnd(_controller, trailers) {
      ex.end(headersFromObject(trailers));
    },
    onResponseError(_controller, err) {
      if (ex.isReset || failed) return; // the relay reset it, or we already did
      failed = true;
      if (started) {
        log.warn({ target: head.target, err: describe(err) }, "target response failed mid-body");
        return ex.reset(ResetCode.TARGET_ERROR, `target "${head.target}" failed while sending its response`);
      }
      failTarget(ex, head, err, log);
    },
  };
}

/** Resets an exchange whose target failed before answering, with a reason safe to show clients. */
export function failTarget(ex: Exchange, head: RequestHead, err: unknown, log: Logger): void {
  const [code, reason] = classify(err);
  log.warn({ target: head.target, err: describe(err) }, "target request failed");
  ex.reset(code, `target "${head.target}" ${reason}`);
}

/**
 * Checks a path from the relay before it is appended to a target's base path.
 * The relay normalises paths already; this is the connector's own guarantee
 * that nothing climbs above the base path, whoever controls the relay.
 */
export function pathProblem(path: string): string | undefined {
  if (!path.startsWith("/")) return "it does not start with '/'";
  if (path.includes("\\") || /%(2f|5c|00)/i.test(path)) return "it contains an encoded '/', '\\' or NUL, or a '\\'";
  for (const raw of path.split("/")) {
    let segment: string;
    try {
      segment = decodeURIComponent(raw);
    } catch {
      return "it has malformed percent-encoding";
    }
    if (segment === "." || segment === ".." || /^\.\.?;/.test(segment)) return "it contains a dot segment";
  }
  return undefined;
}

/** Maps undici and socket errors to a reset code and a message safe to show clients (no internal addresses). */
function classify(err: unknown): [ResetCode, string] {
  const code = errorCode(err);
  switch (code) {
    case "ECONNREFUSED":
      return [ResetCode.TARGET_UNREACHABLE, "refused the connection"];
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return [ResetCode.TARGET_UNREACHABLE, "has a host name that does not resolve"];
    case "EHOSTUNREACH":
    case "ENETUNREACH":
    case "UND_ERR_CONNECT_TIMEOUT":
    case "ETIMEDOUT":
      return [ResetCode.TARGET_UNREACHABLE, "could not be reached (timeout or no route)"];
    case "UND_ERR_HEADERS_TIMEOUT":
      return [ResetCode.DEADLINE_EXCEEDED, "did not respond in time"];
    default:
      if (code?.startsWith("ERR_TLS") || code?.includes("CERT")) return [ResetCode.TARGET_UNREACHABLE, "failed the TLS handshake"];
      return [ResetCode.TARGET_ERROR, "failed before responding"];
  }
}

function errorCode(err: unknown): string | undefined {
  for (let e = err as { code?: string; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (typeof e.code === "string" && e.code !== "UND_ERR_SOCKET") return e.code;
    if (typeof e.code === "string" && !e.cause) return e.code;
  }
  return undefined;
}

export function describe(err: unknown): string {
  const e = err as Error & { code?: string; cause?: Error & { code?: string } };
  return [e.message, e.code, e.cause?.message, e.cause?.code].filter(Boolean).join(" / ");
}
