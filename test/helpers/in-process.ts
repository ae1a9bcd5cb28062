import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createAdminClient, type AdminClient } from "../../clients/cli/admin-client.js";
import { type Connector, startConnector } from "../../clients/connector/connector.js";
import { type ConnectorFlags, loadConnectorSettings } from "../../clients/connector/connector-config.js";
import { createLogger } from "../../core/logger.js";
import type { Relay, RelayOptions } from "../../services/relay/relay.js";
import { runRelay, type RunRelayOptions } from "../../services/relay/run-relay.js";
import type { RelayServer } from "../../services/relay/server.js";
import { ADMIN_TOKEN, tempDir } from "./processes.js";

export const quietLog = createLogger({ level: process.env.TEST_LOG_LEVEL ?? "silent", pretty: false });

export interface TestRelay {
  relay: Relay;
  server: RelayServer;
  url: string;
  /** The admin port's URL, when started with `adminListen`. */
  adminUrl: string | undefined;
  admin: AdminClient;
  dataDir: string;
  /** Creates a tenant and returns a fresh connector key for it. */
  tenantWithKey(tenant: string): Promise<string>;
  close(): Promise<void>;
}

/** A relay in this process on 127.0.0.1, port 0. */
export async function startTestRelay(
  options: Partial<RelayOptions> & {
    tlsCert?: string;
    tlsKey?: string;
    ca?: string;
    listen?: Partial<RunRelayOptions["listen"]>;
    adminListen?: RunRelayOptions["adminListen"];
  } = {},
): Promise<TestRelay> {
  const dataDir = options.dataDir ?? tempDir();
  const { tlsCert, tlsKey, ca: _ca, listen, log, adminListen, ...relayOptions } = options;
  const running = await runRelay({
    log: log ?? quietLog,
    relay: { adminToken: ADMIN_TOKEN, ...relayOptions, dataDir },
    listen: { host: "127.0.0.1", port: 0, tlsCert, tlsKey, connectorCa: options.connectorCa, clientCertificates: options.clientCertificates, ...listen },
    adminListen,
  });
  const { relay, server } = running;
  const admin = createAdminClient(server.url, ADMIN_TOKEN, { ca: options.ca ? readFileSync(options.ca) : undefined });
  return {
    relay,
    server,
    url: server.url,
    adminUrl: running.adminUrl,
    admin,
    dataDir,
    async tenantWithKey(tenant) {
      if (!relay.catalog.getTenant(tenant)) await admin.createTenant({ name: tenant });
      const { secret } = await admin.createKey({ tenant });
      return secret;
    },
    async close() {
      await running.stop({ graceMs: 0, forceAfterMs: 100 });
    },
  };
}

/** A target's settings as the config file takes them (proto JSON names): url, hostHeader, cors... */
export type TestTargetConfig = string | ({ url: string } & Record<string, unknown>);

/**
 * A connector in this process; resolves once `tunnels` tunnels are up. Targets
 * given as objects go through a config file, as an operator would write them.
 */
export async function startTestConnector(
  relayUrl: string | string[],
  key: string,
  targets: Record<string, TestTargetConfig>,
  extra: { tunnels?: number; grace?: string; maxConcurrent?: number; flags?: ConnectorFlags } = {},
): Promise<Connector> {
  const detailed = Object.values(targets).some((t) => typeof t !== "string");
  let config: string | undefined;
  if (detailed) {
    config = join(tempDir(), "connector.json");
    const list = Object.entries(targets).map(([name, t]) => (typeof t === "string" ? { name, url: t } : { name, ...t }));
    writeFileSync(config, JSON.stringify({ targets: list }));
  }
  const settings = loadConnectorSettings(
    {
      config,
      relay: Array.isArray(relayUrl) ? relayUrl : [relayUrl],
      key,
      target: detailed ? undefined : Object.entries(targets).map(([n, u]) => `${n}=${u as string}`),
      tunnels: String(extra.tunnels ?? 2),
      reconnectMin: "50ms",
      reconnectMax: "500ms",
      grace: extra.grace ?? "5s",
      maxConcurrent: extra.maxConcurrent === undefined ? undefined : String(extra.maxConcurrent),
      ...extra.flags,
    },
    {},
  );
  const connector = startConnector(settings, quietLog);
  await connector.waitConnected(extra.tunnels ?? 2);
  return connector;
}
