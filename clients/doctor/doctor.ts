import { readFileSync } from "node:fs";
import type { Socket } from "node:net";
import { request } from "undici";
import type { TargetSpec } from "../connector/connector-config.js";
import { proxyFor } from "../connector/proxy.js";
import { hostPort } from "../../core/host-port.js";
import { connectRelay, resolveHost, tlsHandshake } from "./dial.js";
import { openHttp2, probeTunnel, relayVersion } from "./relay-probe.js";
import { createRecorder, type Report, StepFailure } from "./report.js";

export interface DoctorOptions {
  relay: URL;
  key?: string;
  /** --proxy; without it HTTPS_PROXY/HTTP_PROXY and NO_PROXY from `env` decide. */
  proxy?: URL;
  /** PEM file of the CA(s) to trust instead of the system's. */
  ca?: string;
  insecureSkipVerify?: boolean;
  /** The connector's targets, checked from this machine. */
  targets: TargetSpec[];
  timeoutMs: number;
  env: NodeJS.ProcessEnv;
}

/**
 * The "check connection" button: each step a connector takes to reach its
 * relay and its targets, in order, each with its time and, when it fails, what
 * to do. Relay steps stop at the first failure (the rest depend on it); every
 * target is checked regardless.
 */
export async function runDoctor(o: DoctorOptions): Promise<Report> {
  const r = createRecorder();
  await checkRelay(o, r);
  for (const target of o.targets) {
    const url = `${target.origin}${target.basePath}/`;
    await r.run(
      `target ${target.name}`,
      async () => {
        const started = performance.now();
        const res = await request(url, { method: "GET", headersTimeout: o.timeoutMs, bodyTimeout: o.timeoutMs }).catch((err: Error & { code?: string }) => {
          throw new StepFailure(`GET ${url} failed: ${err.code ?? err.message}`, `is the service at ${target.origin} running, and reachable from this machine?`);
        });
        await res.body.dump();
        const detail = `GET ${url} → ${res.statusCode} in ${Math.round(performance.now() - started)} ms`;
        // Any answer means reachable; a 5xx means the service itself is unwell.
        if (res.statusCode >= 500) throw new StepFailure(detail, "the target answers, but with a server error: check the service");
        return { detail, value: undefined };
      },
      "check the target's URL in the connector's configuration",
    );
  }
  return { ok: r.steps.every((s) => s.ok), steps: r.steps };
}

async function checkRelay(o: DoctorOptions, r: ReturnType<typeof createRecorder>): Promise<void> {
  const secure = o.relay.protocol === "https:";
  const { host, port } = hostPort(o.relay);
  const proxy = proxyFor(o.relay, o.proxy, o.env);
  const dnsHost = proxy ? proxy.hostname : host;

  const addresses = await r.run(
    "DNS",
    async () => {
      const all = await resolveHost(dnsHost);
      return { detail: `${dnsHost} → ${all.join(", ")}${proxy ? ` (the proxy resolves ${host})` : ""}`, value: all };
    },
    "check the name",
  );
  if (!addresses) return;

  let socket = await r.run(
    proxy ? "TCP via proxy" : "TCP",
    async () => {
      const s = await connectRelay(host, port, proxy, o.timeoutMs);
      return { detail: proxy ? `CONNECT ${host}:${port} through ${proxy.host} accepted` : `connected to ${s.remoteAddress}:${port}`, value: s as Socket };
    },
    "check the network",
  );
  if (!socket) return;

  if (secure) {
    const ca = o.ca ? readFileSync(o.ca) : undefined;
    const tls = await r.run(
      "TLS",
      async () => {
        const result = await tlsHandshake(socket!, host, { ca, caFile: o.ca, insecure: o.insecureSkipVerify });
        return { detail: result.detail, value: result.socket, warnings: result.warnings };
      },
      "check the relay's certificate",
    );
    if (!tls) return;
    socket = tls;
  }

  const session = await r.run(
    "HTTP/2",
    async () => ({ detail: secure ? "negotiated h2 by ALPN" : "h2c (prior knowledge) accepted", value: await openHttp2(socket!, o.relay.origin, o.timeoutMs) }),
    "tunnels need HTTP/2 end to end",
  );
  if (!session) return;
  try {
    const version = await r.run(
      "relay",
      async () => {
        const v = await relayVersion(session, o.timeoutMs);
        return { detail: `Ferry ${v}, protocol compatible`, value: v };
      },
      "check the relay URL",
    );
    if (!version || !o.key) return;
    const probe = await r.run(
      "key",
      async () => {
        const p = await probeTunnel(session, o.key!, o.timeoutMs);
        return { detail: `accepted for tenant "${p.tenant}" by node ${p.nodeId} (probe: no traffic taken)`, value: p };
      },
      "check the key",
    );
    if (!probe) return;
    await r.run(
      "round trip",
      // One ping: the relay answers at most one per half keepalive interval (pong floods are a resource attack).
      async () => ({ detail: `tunnel ping answered in ${(await probe.ping()).toFixed(1)} ms`, value: undefined }),
      "the tunnel is up but does not answer pings: check the relay's logs",
    );
    probe.close();
  } finally {
    // Nothing here is worth a graceful goodbye, and a half-closed probe stream would hold a graceful close open.
    session.destroy();
  }
}
