import { createRequire } from "node:module";
import type { Agent as AgentType } from "undici";

// Only undici's Agent: its index also loads fetch, WebSocket, caches and mocks (~5 MB of a connector's idle RSS).
// A path inside the package (pinned in package.json, no "exports" map); the connector tests fail if it moves.
const Agent = createRequire(import.meta.url)("undici/lib/dispatcher/agent.js") as typeof AgentType;
import { type RequestHead, ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import type { Exchange } from "../../core/exchange/exchange.js";
import { endToEndHeaders, header, toFlatList } from "../../core/headers.js";
import type { Logger } from "../../core/logger.js";
import { createRateLimitedLog } from "../../core/rate-limited-log.js";
import { cancelOnReset } from "./cancel-on-reset.js";
import type { TargetSpec } from "./connector-config.js";
import type { TargetRequest } from "./target-request.js";
import type { PreflightAnswer } from "./cors.js";
import { createH2Transport } from "./h2-transport.js";
import { IDENTITY_HEADER, type IdentityCheck, identityOf, type IdentityRefusal, type TunnelOrigin } from "./identity-check.js";
import { allowlistProblem } from "./target-allowlist.js";
import { forwardHttp1 } from "./http1-transport.js";
import { describe } from "./target-errors.js";
import { forwardUpgrade } from "./upgrade-transport.js";

export interface TargetForwarder {
  /** Whether the connector serves this target. */
  has(name: string): boolean;
  /**
   * Starts one exchange against its target; it runs until the response is sent or the exchange is reset.
   * `tunnel` is the tunnel it came on: a target with requireIdentity needs it to check the identity.
   */
  forward(ex: Exchange, head: RequestHead, tunnel?: TunnelOrigin): void;
  close(): Promise<void>;
}

export interface TargetForwarderOptions {
  /**
   * Told of each request the connector refused itself, with the audit outcome: "forbidden" (the target's
   * allowlist), "identity_required", "identity_invalid" or "identity_unavailable".
   */
  onRefused?(ex: Exchange, outcome: string): void;
  /** Checks X-Ferry-Identity for targets with requireIdentity; without it they refuse every request (503). */
  identity?: IdentityCheck;
}

/** Waiting for the identity check ended because the exchange did. */
const GONE = Symbol("exchange gone");

/**
 * Sends exchanges to the configured targets: HTTP/1.1 with undici, HTTP/2
 * (h2c, or TLS with ALPN) with node:http2, upgrades over a raw HTTP/1.1
 * connection. The request URL is built from the target's own origin and base
 * path plus the relay-supplied path, which must start with "/": the relay can
 * choose a path below a target, never another host. Before a request goes on,
 * the connector's own checks: X-Ferry-Identity for a target with
 * requireIdentity, then the target's allowlist.
 */
export function createTargetForwarder(targets: readonly TargetSpec[], log: Logger, options: TargetForwarderOptions = {}): TargetForwarder {
  const { identity: identityCheck, onRefused = () => {} } = options;
  const byName = new Map(targets.map((t) => [t.name, t]));
  // Peers decide how often a request is refused: the first of each kind is logged at once, then one line a minute.
  const warn = createRateLimitedLog(log);
  const agent = new Agent({ keepAliveTimeout: 30_000, connections: 256, allowH2: false });
  const h2 = createH2Transport(log);
  const http1 = (req: TargetRequest) => forwardHttp1(agent, req, log);
  const start = (req: TargetRequest): void | Promise<void> => {
    if (req.head.upgrade) return forwardUpgrade(agent, req, log);
    if (req.target.transport === "http1") return http1(req);
    return h2.forward(req, () => http1(req));
  };

  /** A request the connector answers itself: logged (rate-limited), told to the audit log, answered in the relay's error shape. */
  const refuse = (ex: Exchange, head: RequestHead, outcome: string, answer: PreflightAnswer, reason: string, line: string) => {
    warn(outcome, { target: head.target, method: head.method, path: head.path, clientAddress: head.clientAddress, reason }, line);
    onRefused(ex, outcome);
    answerLocally(ex, head, answer);
  };

  /** The allowlist, CORS, then the target. */
  const admit = (ex: Exchange, head: RequestHead, target: TargetSpec): void => {
    // Before CORS: a preflight for a path or method the admin closed is refused too.
    // A CORS preflight is judged by the method it asks about: GET/POST-only targets still answer browsers.
    const preflightFor = target.cors && head.method === "OPTIONS" ? head.headers.find((h) => h.name.toLowerCase() === "access-control-request-method") : undefined;
    const forbidden = allowlistProblem(target, preflightFor?.value ?? head.method, head.path, head.headers);
    if (forbidden) return refuse(ex, head, "forbidden", errorAnswer(403, "connector_forbidden", forbidden), forbidden, "refused by the allowlist");
    // Filtered again here: even a compromised relay cannot set Host or per-hop fields.
    const headers = endToEndHeaders(toFlatList(head.headers), { upgrade: head.upgrade });
    // The one Ferry header a target gets (the filter drops the rest): the relay's word on who asks, which the
    // target may verify itself, whether or not the connector required it.
    const identity = identityOf(head.headers);
    if (typeof identity === "string") headers.push(header(IDENTITY_HEADER, identity));
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
  };

  const identityRefused = (ex: Exchange, head: RequestHead, r: IdentityRefusal) =>
    refuse(ex, head, r.code, errorAnswer(r.status, r.code, r.message), r.detail ?? r.message, "refused: no valid X-Ferry-Identity");

  /**
   * Checks the identity first (before the allowlist: who before what), then admits. Until the check answers,
   * a reset (the client gave up, the tunnel went) ends the wait at once: nothing is started for the exchange
   * and nothing of it is held; a key fetch it was waiting for goes on for the others.
   */
  const checkIdentity = (ex: Exchange, head: RequestHead, target: TargetSpec, tunnel: TunnelOrigin | undefined): void => {
    const check = identityCheck;
    if (!check) {
      return identityRefused(ex, head, { status: 503, code: "identity_unavailable", message: "this connector cannot check identities" });
    }
    void new Promise<IdentityRefusal | undefined | typeof GONE>((resolve) => {
      cancelOnReset(ex, () => resolve(GONE));
      // After the frames that came with the head: a Reset in the same batch then costs no check.
      queueMicrotask(() => {
        if (ex.isReset) return;
        check.check(head.headers, target.name, tunnel).then(resolve, (err: unknown) =>
          resolve({ status: 503, code: "identity_unavailable", message: "the identity could not be checked", detail: describe(err) }),
        );
      });
    })
      .then((verdict) => {
        if (verdict === GONE || ex.isReset) return;
        ex.onReset = undefined;
        if (verdict) return identityRefused(ex, head, verdict);
        admit(ex, head, target);
      })
      .catch((err: unknown) => {
        log.error({ target: head.target, err: describe(err) }, "forwarding failed");
        ex.reset(ResetCode.INTERNAL, "connector failure");
      });
  };

  return {
    has: (name) => byName.has(name),

    forward(ex, head, tunnel) {
      const target = byName.get(head.target);
      if (!target) return ex.reset(ResetCode.REFUSED, `this connector has no target "${head.target}"`);
      const badPath = pathProblem(head.path);
      if (badPath) {
        log.warn({ target: head.target, path: head.path, problem: badPath }, "refused a request path from the relay");
        return ex.reset(ResetCode.PROTOCOL_ERROR, `request path refused by the connector: ${badPath}`);
      }
      if (target.requireIdentity) return checkIdentity(ex, head, target, tunnel);
      admit(ex, head, target);
    },

    close: async () => {
      identityCheck?.close();
      await Promise.all([agent.close(), h2.close()]);
    },
  };
}

/** The forwarder as one tunnel's connection sees it: every request carries the tunnel it came on. */
export function viaTunnel(forwarder: TargetForwarder, tunnel: TunnelOrigin): TargetForwarder {
  return {
    has: (name) => forwarder.has(name),
    forward: (ex, head) => forwarder.forward(ex, head, tunnel),
    // Shared by every tunnel: the connector closes it, once.
    close: async () => {},
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

/** An error in the relay's shape, so clients and logs tell the connector's refusal from the target's own. */
function errorAnswer(status: number, code: string, reason: string): PreflightAnswer {
  return {
    status,
    headers: [
      header("content-type", "application/json"),
      // 503: the relay's keys could not be fetched; the next try comes within seconds (relay-jwks.ts).
      ...(status === 503 ? [header("retry-after", "5")] : []),
    ],
    body: JSON.stringify({ error: { code, message: `refused by the connector: ${reason}` } }),
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
