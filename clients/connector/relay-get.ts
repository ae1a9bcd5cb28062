import { connect as http2Connect } from "node:http2";
import { isIP, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { FerryError } from "../../core/errors.js";
import { hostPort } from "../../core/host-port.js";
import { proxyFor } from "./proxy.js";
import { type RelayNetwork, relayTlsOptions } from "./relay-channel.js";
import { reachRelay } from "./relay-diagnosis.js";

/** What a GET on the relay answered. */
export interface RelayAnswer {
  status: number;
  contentType: string;
  body: Buffer;
}

export interface RelayGetOptions {
  /** The whole answer must be in by then (connection, TLS, head and body). */
  timeoutMs: number;
  /** Longest body taken; a longer one fails the GET. */
  maxBytes: number;
  /** Aborting it ends the GET at once (the connector is stopping). */
  signal?: AbortSignal;
  /** The Accept header. */
  accept?: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * GETs `path` on a relay the way the tunnels reach it: the same proxy (NO_PROXY included, proxy.ts), the same
 * trust (--ca, --insecure-skip-verify) and client certificate, and HTTP/2, which the relay's port is known to
 * speak since the tunnels use it (cleartext by prior knowledge, TLS by ALPN), whatever a proxy in between does
 * with HTTP/1.1. On a connection of its own, closed after the answer: the relay serves no request on a tunnel's
 * connection, and these GETs are rare. Rejects with a FerryError (timeout, too large) or the socket's error.
 */
export function getFromRelay(relay: URL, path: string, network: RelayNetwork, opts: RelayGetOptions): Promise<RelayAnswer> {
  const where = `${relay.origin}${path}`;
  return new Promise<RelayAnswer>((resolve, reject) => {
    /** Sockets and the session, destroyed however the GET ends: nothing outlives it. */
    const open: Array<{ destroy(): void }> = [];
    let settled = false;
    const finish = (err: Error | undefined, answer?: RelayAnswer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", aborted);
      for (const r of open.splice(0).reverse()) r.destroy();
      if (err) reject(err);
      else resolve(answer!);
    };
    const keep = <T extends { destroy(): void }>(r: T): T => {
      if (settled) r.destroy();
      else open.push(r);
      return r;
    };
    const timer = setTimeout(
      () => finish(new FerryError("deadline_exceeded", "relay_timeout", `no answer from ${where} within ${opts.timeoutMs} ms`)),
      opts.timeoutMs,
    );
    const aborted = () => finish(new FerryError("unavailable", "cancelled", `GET ${where} cancelled: the connector is stopping`));
    if (opts.signal?.aborted) return aborted();
    opts.signal?.addEventListener("abort", aborted, { once: true });

    const request = (socket: Socket) => {
      const session = keep(http2Connect(relay.origin, { createConnection: () => socket }));
      session.on("error", (err) => finish(err));
      const stream = session.request({ ":path": path, ...(opts.accept ? { accept: opts.accept } : {}) }, { endStream: true });
      let status = 0;
      let contentType = "";
      let size = 0;
      const chunks: Buffer[] = [];
      const tooLarge = () => finish(new FerryError("too_large", "relay_answer_too_large", `${where} answered more than ${opts.maxBytes} bytes`));
      stream.on("response", (h) => {
        status = Number(h[":status"]);
        contentType = String(h["content-type"] ?? "");
        if (Number(h["content-length"] ?? 0) > opts.maxBytes) tooLarge();
      });
      stream.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > opts.maxBytes) return tooLarge();
        chunks.push(chunk);
      });
      stream.on("end", () => finish(undefined, { status, contentType, body: Buffer.concat(chunks) }));
      stream.on("error", (err) => finish(err));
      stream.on("close", () => finish(new Error(`${where}: the stream closed before the answer was complete`)));
    };

    let proxy: URL | undefined;
    try {
      proxy = proxyFor(relay, network.proxy, opts.env ?? process.env);
    } catch (err) {
      return finish(err as Error);
    }
    const { host, port } = hostPort(relay);
    reachRelay(host, port, proxy, opts.timeoutMs).then(
      (raw) => {
        keep(raw).on("error", (err) => finish(err));
        if (settled) return;
        try {
          if (relay.protocol === "https:") overTls(raw);
          else request(raw);
        } catch (err) {
          finish(err as Error); // an unreadable --ca file, say
        }
      },
      (err: Error) => finish(err),
    );

    function overTls(raw: Socket): void {
      const tls = keep(
        tlsConnect({
          socket: raw,
          // The name the certificate is checked against; SNI carries names only (RFC 6066).
          host,
          ...(isIP(host) ? {} : { servername: host }),
          ALPNProtocols: ["h2"],
          ...relayTlsOptions(network),
          ...(network.insecureSkipVerify ? { rejectUnauthorized: false, checkServerIdentity: () => undefined } : {}),
        }),
      );
      tls.on("error", (err) => finish(err));
      tls.once("secureConnect", () => {
        if (tls.alpnProtocol !== "h2") return finish(new Error(`${relay.origin} negotiated ${tls.alpnProtocol || "no protocol"} instead of HTTP/2`));
        request(tls);
      });
    }
  });
}
