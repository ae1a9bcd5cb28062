import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import { type ChannelCredentials, type ChannelOptions, credentials } from "@grpc/grpc-js";
import { authority } from "../../core/host-port.js";
import type { ConnectorSettings } from "./connector-config.js";
import { proxyCredentials, proxyFor } from "./proxy.js";

/** How the connector reaches its relays through the local network: proxy, trust, client certificate. */
export interface RelayNetwork {
  /** Configured proxy (--proxy / file); undefined: the environment decides per relay (see proxy.ts). */
  proxy?: URL;
  /** PEM CA file that replaces the system store. */
  ca?: string;
  insecureSkipVerify: boolean;
  tlsCert?: string;
  tlsKey?: string;
}

export function relayNetwork(settings: ConnectorSettings): RelayNetwork {
  return {
    insecureSkipVerify: settings.insecureSkipVerify,
    ...(settings.proxy ? { proxy: settings.proxy } : {}),
    ...(settings.ca ? { ca: settings.ca } : {}),
    ...(settings.tlsCert && settings.tlsKey ? { tlsCert: settings.tlsCert, tlsKey: settings.tlsKey } : {}),
  };
}

/** What grpc-js needs to dial one relay: the address to connect to, credentials, and the proxy options. */
export interface RelayChannel {
  /** grpc-js target: the relay, or the proxy when there is one. */
  target: string;
  credentials: ChannelCredentials;
  options: ChannelOptions;
  /** The proxy in use for this relay, if any. */
  proxy?: URL;
}

/**
 * Builds the channel for a relay. Proxying uses grpc-js's own HTTP CONNECT (it works for TLS and for h2c alike),
 * but driven by explicit options rather than its environment lookup: the proxy must come from our settings and
 * NO_PROXY rules (proxy.ts), and a grpc_proxy variable meant for another program must not reroute the tunnels.
 * The target becomes the proxy; `grpc.http_connect_target` names the relay, which grpc-js then also uses for SNI,
 * the certificate check and :authority.
 */
export function relayChannel(relay: URL, network: RelayNetwork, env: NodeJS.ProcessEnv = process.env): RelayChannel {
  const relayAddress = authority(relay);
  const creds = relay.protocol === "https:" ? tlsCredentials(network) : credentials.createInsecure();
  const proxy = proxyFor(relay, network.proxy, env);
  const options: ChannelOptions = { "grpc.enable_http_proxy": 0 };
  if (!proxy) return { target: `dns:${relayAddress}`, credentials: creds, options };
  const auth = proxyCredentials(proxy);
  options["grpc.http_connect_target"] = `dns:${relayAddress}`;
  options["grpc.default_authority"] = relayAddress;
  if (auth) options["grpc.http_connect_creds"] = auth;
  return { target: `dns:${authority(proxy)}`, credentials: creds, options, proxy };
}

/**
 * The trust and client certificate for TLS to a relay, read from the files now (so a renewed certificate is used
 * from the next connection on). Without --ca: Node's default trust (bundled roots plus NODE_EXTRA_CA_CERTS). With
 * --ca: only that file, so a certificate signed by anyone else (an inspecting proxy) is refused.
 */
export function relayTlsOptions(network: RelayNetwork): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
  return {
    ...(network.ca ? { ca: readFileSync(network.ca) } : {}),
    ...(network.tlsCert && network.tlsKey ? { cert: readFileSync(network.tlsCert), key: readFileSync(network.tlsKey) } : {}),
  };
}

function tlsCredentials(network: RelayNetwork): ChannelCredentials {
  // A secure context of Node's own: grpc-js's createSsl() misses NODE_EXTRA_CA_CERTS.
  const context = createSecureContext(relayTlsOptions(network));
  if (!network.insecureSkipVerify) return credentials.createFromSecureContext(context);
  return credentials.createFromSecureContext(context, { rejectUnauthorized: false, checkServerIdentity: () => undefined });
}
