import { type RequestHead, ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import type { Exchange } from "../../core/exchange/exchange.js";
import type { Logger } from "../../core/logger.js";

/** Resets an exchange whose target failed before answering, with a reason safe to show clients. */
export function failTarget(ex: Exchange, head: RequestHead, err: unknown, log: Logger): void {
  const [code, reason] = classify(err);
  log.warn({ target: head.target, err: describe(err) }, "target request failed");
  ex.reset(code, `target "${head.target}" ${reason}`);
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
