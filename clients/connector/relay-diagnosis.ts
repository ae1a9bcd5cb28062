import { connect as netConnect, type Socket } from "node:net";
import { FerryError } from "../../core/errors.js";
import { hostPort } from "../../core/host-port.js";
import { checkH2Preface, notHttp2Problem } from "./h2-check.js";
import { connectThroughProxy, describeProxy, ProxyError, proxyFor } from "./proxy.js";
import type { RelayNetwork } from "./relay-channel.js";
import { diagnoseTls, type TlsDiagnosis } from "./tls-diagnosis.js";

export interface RelayDiagnosis {
  ok: boolean;
  /** The proxy used (host:port, no credentials), if any. */
  proxy?: string;
  /** The TLS check, for https:// relays that were reached. */
  tls?: TlsDiagnosis;
  problem?: string;
  fix?: string;
}

/**
 * Walks the path the tunnels take to a relay one step at a time (proxy CONNECT, TCP, TLS, HTTP/2) and says
 * which step fails and why. Run after a dial failed, since grpc-js's own errors name none of this.
 */
export async function diagnoseRelay(relay: URL, network: RelayNetwork, env: NodeJS.ProcessEnv = process.env): Promise<RelayDiagnosis> {
  const { host, port } = hostPort(relay);
  const proxy = proxyFor(relay, network.proxy, env);
  const via = proxy ? { proxy: describeProxy(proxy) } : {};
  let socket: Socket;
  try {
    socket = await reachRelay(host, port, proxy, 10_000);
  } catch (err) {
    if (err instanceof ProxyError) return { ok: false, ...via, problem: err.message };
    return { ok: false, ...via, problem: `cannot connect to ${host}:${port}: ${(err as Error).message}`, fix: "check the relay URL and that outbound connections to it are allowed" };
  }
  if (relay.protocol !== "https:") {
    const answer = await checkH2Preface(socket);
    if (answer === "h2") return { ok: true, ...via };
    return { ok: false, ...via, ...notHttp2Problem(answer === "http/1.1" ? "http/1.1" : "nothing: the HTTP/2 preface was refused") };
  }
  const tls = await diagnoseTls({ host, port, servername: host, socket, ...(network.ca ? { ca: network.ca } : {}), ...(network.tlsCert && network.tlsKey ? { cert: network.tlsCert, key: network.tlsKey } : {}) });
  // With --insecure-skip-verify only the handshake and HTTP/2 count, not the certificate.
  if (network.insecureSkipVerify && tls.chain.length > 0) {
    if (tls.alpn === "h2") return { ok: true, ...via, tls };
    if (tls.alpn === "http/1.1") return { ok: false, ...via, tls, ...notHttp2Problem("http/1.1") };
  }
  return { ok: tls.ok, ...via, tls, ...(tls.problem ? { problem: tls.problem } : {}), ...(tls.fix ? { fix: tls.fix } : {}) };
}

/** One line for the log: the problem, the presented chain, the fix. */
export function describeDiagnosis(d: RelayDiagnosis): string {
  const parts = [d.problem ?? "no problem found on the path to the relay"];
  if (d.tls?.chain.length) {
    parts.push(
      `name checked: ${d.tls.servername}; chain: ${d.tls.chain.map((c) => `[${c.subject}, issued by ${c.issuer}, valid ${c.validFrom.slice(0, 10)}..${c.validTo.slice(0, 10)}]`).join(" ")}`,
    );
  }
  if (d.fix) parts.push(`fix: ${d.fix}`);
  return parts.join(" — ");
}

/**
 * The first step of the path, shared with `ferry doctor`: a raw connection to the relay's host:port, through the
 * proxy's CONNECT when there is one. Rejects with a ProxyError (its detail and fix), a FerryError
 * "connect_timeout" when the TCP connection got no answer within `timeoutMs`, or the socket's own error.
 */
export function reachRelay(host: string, port: number, proxy: URL | undefined, timeoutMs: number): Promise<Socket> {
  if (proxy) return connectThroughProxy({ proxy, host, port, timeoutMs });
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host, port, timeout: timeoutMs });
    socket.once("connect", () => {
      socket.setTimeout(0);
      resolve(socket);
    });
    socket.once("timeout", () => socket.destroy(new FerryError("deadline_exceeded", "connect_timeout", "timed out")));
    socket.once("error", reject);
  });
}
