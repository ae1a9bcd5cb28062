/** Where the connector's unit looks for its program and files; install-service can change each. */
export interface ConnectorUnitOptions {
  /** The program: the single-file connector, or `ferry` from the npm package. */
  exec: string;
  /** The YAML config (relays, targets; no secret). */
  configFile: string;
  /** FERRY_CONNECTOR_KEY=..., read by systemd as root. */
  envFile: string;
  /** A user to run as instead of one allocated at each start; undefined: dynamic. */
  user?: string;
}

/**
 * What packaging/systemd/ferry-connector.service is: the unit with these (test/unit/service-units.test.ts), and
 * where install-service puts the config and the key file unless told otherwise.
 */
export const DEFAULT_CONNECTOR_UNIT: ConnectorUnitOptions = {
  exec: "/usr/local/bin/ferry-connector",
  configFile: "/etc/ferry/connector.yaml",
  envFile: "/etc/ferry/connector.env",
};

/**
 * The connector's systemd unit. This is its one source: `ferry connector install-service` writes it,
 * and the copy in packaging/ is this text with the defaults (a test fails when the two differ; `npx vitest
 * run test/unit/service-units.test.ts -u` rewrites the copy). Paths are written as given: the caller checks
 * they need no quoting.
 */
export function connectorUnit(o: ConnectorUnitOptions): string {
  const user = o.user
    ? `# ${o.user} is used when it exists (it may own files the connector reads: a CA, an mTLS key); else
# systemd allocates a user of that name for each start.
DynamicUser=yes
User=${o.user}`
    : `# A user allocated at each start and gone after it: nothing to create beforehand, and nothing on disk it
# owns but /var/log/ferry. Files it must read (a CA, an mTLS key) must be readable by all, or name a user
# with User= (install-service --user): an existing one is then used.
DynamicUser=yes`;
  return `# ferry-connector.service: the on-premises end of Ferry. It only dials out to the relays: no listening
# port, no privileges and nothing writable but its audit log, so the rest is taken away below.
#
# Written by \`ferry connector install-service\` (which also writes the config and the key file it names).

[Unit]
Description=Ferry connector (outbound tunnels to the Ferry relay)
Wants=network-online.target
After=network-online.target

[Service]
Type=exec
ExecStart=${o.exec} connector --config ${o.configFile}
# FERRY_CONNECTOR_KEY=fck_...: root-owned, mode 0600. systemd reads it as root before dropping privileges,
# so the key is in neither the unit, the config, nor the process list. "-": without the file the connector
# still starts and says which key is missing, more clearly than systemd would.
EnvironmentFile=-${o.envFile}
${user}
# For auditLog: /var/log/ferry/exchanges.jsonl (logrotate: systemctl kill -s HUP ferry-connector).
LogsDirectory=ferry
UMask=0077

# Unreachable relays are retried inside the connector; systemd restarts it only when it fails (a bad
# config, a crash). A --for window that ended exits 0 and stays ended.
Restart=on-failure
RestartSec=5s
# SIGTERM: GoAway to the relays, and in-flight exchanges get --grace (30s by default) to finish. Keep the
# timeout above the grace, or systemd kills what is still draining. Pause and resume without a restart:
# systemctl kill -s USR1 ferry-connector / systemctl kill -s USR2 ferry-connector.
KillSignal=SIGTERM
TimeoutStopSec=45s
LimitNOFILE=65536

NoNewPrivileges=yes
CapabilityBoundingSet=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
# A call outside the set fails with EPERM, which Node handles as any failed call, instead of killing the
# process with SIGSYS.
SystemCallErrorNumber=EPERM
# No MemoryDenyWriteExecute=yes: V8's JIT writes machine code into memory and then runs it, which that
# option forbids (Node would not start).

[Install]
WantedBy=multi-user.target
`;
}
