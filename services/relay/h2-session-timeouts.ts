import type { Http2Session } from "node:http2";
import type { Limits } from "../limits/limits.js";

/**
 * The HTTP/2 counterpart of HTTP/1.1's headersTimeout and keep-alive timeout,
 * which Node does not offer (its session timeout is reset by any frame, the
 * relay's own keepalive PINGs included): a session must open its first stream
 * within headersTimeout of connecting, and one with no stream open is closed
 * (GOAWAY) after idleTimeout. A tunnel session always has its tunnel stream
 * open, so it is never idle; nor is a client with an exchange in progress,
 * however slowly its body moves.
 */
export function watchSessionTimeouts(
  session: Http2Session,
  limits: Pick<Limits, "headersTimeoutMs" | "idleTimeoutMs">,
  onHeadersTimeout: () => void,
): void {
  let open = 0;
  let timer: NodeJS.Timeout | undefined;
  const closeAfter = (ms: number, why?: () => void) => {
    timer = setTimeout(() => {
      if (session.closed || session.destroyed) return;
      why?.();
      session.close();
    }, ms);
    timer.unref();
  };
  closeAfter(limits.headersTimeoutMs, onHeadersTimeout);
  session.on("stream", (stream) => {
    if (open++ === 0) clearTimeout(timer);
    stream.once("close", () => {
      if (--open === 0 && !session.closed) closeAfter(limits.idleTimeoutMs);
    });
  });
  session.once("close", () => clearTimeout(timer));
}
