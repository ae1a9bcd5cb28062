import { Agent } from "undici";
import { type RequestHead, ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import type { Exchange } from "../../core/exchange/exchange.js";
import { endToEndHeaders, header, toFlatList } from "../../core/headers.js";
import type { Logger } from "../../core/logger.js";
import type { TargetSpec } from "./connector-config.js";
import type { TargetRequest } from "./target-request.js";
import type { PreflightAnswer } from "./cors.js";
import { createH2Transport } from "./h2-transport.js";
import { allowlistProblem } from "./target-allowlist.js";
import { forwardHttp1 } from "./http1-transport.js";
import { describe } from "./target-errors.js";
import { forwardUpgrade } from "./upgrade-transport.js";

export interface TargetForwarder {
  /** Whether the connector serves this target. */
  has(name: string): boolean;
  /** Starts one exchange against its target; it runs until the response is sent or the exchange is reset. */
  forward(ex: Exchange, head: RequestHead): void;
  close(): Promise<void>;
}

/**
 * Sends exchanges to the configured targets: HTTP/1.1 with undici, HTTP/2
 * (h2c, or TLS with ALPN) with node:http2, upgrades over a raw HTTP/1.1
 * connection. The request URL is built from the target's own origin and base
 * path plus the relay-supplied path, which must start with "/": the relay can
 * choose a path below a target, never another host.
 */
export function createTargetForwarder(
  targets: readonly TargetSpec[],
  log: Logger,
  /** Told of each request the target's allowlist refused (the audit log records it as such). */
  onForbidden: (ex: Exchange) => void = () => {},
): TargetForwarder {
  const byName = new Map(targets.map((t) => [t.name, t]));
  const agent = new Agent({ keepAliveTimeout: 30_000, connections: 256, allowH2: false });
  const h2 = createH2Transport(log);
  const http1 = (req: TargetRequest) => forwardHttp1(agent, req, log);
  const start = (req: TargetRequest): void | Promise<void> => {
    if (req.head.upgrade) return forwardUpgrade(agent, req, log);
    if (req.target.transport === "http1") return http1(req);
    return h2.forward(req, () => http1(req));
  };

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
      // Before CORS: a preflight for a path or method the admin closed is refused too.
      // A CORS preflight is judged by the method it asks about: GET/POST-only targets still answer browsers.
      const preflightFor = target.cors && head.method === "OPTIONS" ? head.headers.find((h) => h.name.toLowerCase() === "access-control-request-method") : undefined;
      const forbidden = allowlistProblem(target, preflightFor?.value ?? head.method, head.path, head.headers);
      if (forbidden) {
        log.warn({ target: head.target, method: head.method, path: head.path, clientAddress: head.clientAddress }, `refused by the allowlist: ${forbidden}`);
        onForbidden(ex);
        return answerLocally(ex, head, forbiddenAnswer(forbidden));
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
      // Started once the frames that came with the head are read: a Reset in the same batch (a
      // client that sent its request and gave up at once) then costs the target nothing. Nothing a
      // transport throws, now or later, may get past its own exchange.
      void Promise.resolve()
        .then(() => (ex.isReset ? undefined : start(req)))
        .catch((err: unknown) => {
          log.error({ target: head.target, err: describe(err) }, "forwarding failed");
          ex.reset(ResetCode.INTERNAL, "connector failure");
        });
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

/** 403 in the relay's error shape, so clients and logs tell the connector's refusal from the target's own. */
function forbiddenAnswer(reason: string): PreflightAnswer {
  return {
    status: 403,
    headers: [header("content-type", "application/json")],
    body: JSON.stringify({ error: { code: "connector_forbidden", message: `refused by the connector: ${reason}` } }),
  };
}

/** Answers without the target (a CORS preflight, a refusal); the request had no body worth reading. */
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
