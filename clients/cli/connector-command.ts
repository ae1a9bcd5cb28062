import { Command } from "commander";
import { createLogger } from "../../core/logger.js";
import { argvSecretWarning } from "../../core/secret-file.js";
import { installServiceCommand } from "./install-service-command.js";
import { collect, onShutdown } from "./run.js";

export function connectorCommand(): Command {
  return new Command("connector")
    .description("Run a connector on-premises: dials the relay (outbound only) and forwards its requests to local targets.")
    .option("--relay <url>", "relay URL, http:// or https:// (repeatable; tunnels spread over them)", collect)
    .option("--key-file <file>", "file holding the connector key (fck_...); or set FERRY_CONNECTOR_KEY")
    .option("--key <secret>", "connector key on the command line (visible in ps: prefer FERRY_CONNECTOR_KEY or --key-file)")
    .option("--target <name=url>", "a target: NAME=http://host:port[/base] (repeatable)", collect)
    .option("--config <file>", "YAML or JSON file with the same settings (flags override it)")
    .option("--tunnels <n>", "tunnel streams to keep open (default 2)")
    .option("--id <id>", "stable connector id (default: random per start)")
    .option("--max-concurrent <n>", "most exchanges at once per tunnel, open WebSockets included (default 1024)")
    .option("--reconnect-min <duration>", "first reconnect delay ceiling (default 500ms)")
    .option("--reconnect-max <duration>", "reconnect delay cap (default 20s)")
    .option("--grace <duration>", "on SIGTERM, how long in-flight exchanges may take (default 30s)")
    .option("--log-level <level>", "trace, debug, info, warn or error (default info)")
    .option("--proxy <url>", "HTTP proxy for the tunnels: http://[user:pass@]host:port (default: HTTPS_PROXY/HTTP_PROXY, NO_PROXY honoured)")
    .option("--ca <file>", "PEM CA certificate(s) to trust for the relays instead of the system's")
    .option("--insecure-skip-verify", "accept any relay certificate (testing only; warned at every connect)")
    .option("--tls-cert <file>", "PEM client certificate for relays that authenticate connectors by mTLS (with --tls-key)")
    .option("--tls-key <file>", "PEM private key for --tls-cert")
    .option("--for <duration>", "stay connected this long (e.g. 2h), then disconnect and exit")
    .option("--audit-log <file>", "append a JSON line per exchange forwarded (time, id, target, method, path, status, bytes, client)")
    .option("--control-listen <host:port>", "loopback address for local control: GET /status, POST /pause, POST /resume")
    .addHelpText(
      "after",
      `
Example:
  export FERRY_CONNECTOR_KEY=fck_...     # or --key-file /etc/ferry/connector.key (mode 600)
  ferry connector --relay https://relay.example.com --target crm=http://10.0.0.5:8080

Config file (YAML; unknown keys are rejected):
  relays: [https://relay-a.example.com, https://relay-b.example.com]
  key: fck_...          # this file is then a secret: chmod 600 (or leave it out and set FERRY_CONNECTOR_KEY)
  targets:
    - name: crm
      url: http://10.0.0.5:8080
      allowedPaths: [/auth/, /rest/, /webclient/]   # everything else: 403 at the connector
      allowedMethods: [GET, POST]
  tunnels: 2
  reconnectMax: 20s
  auditLog: /var/log/ferry/exchanges.jsonl

Signals: SIGUSR1 pauses (no new exchanges), SIGUSR2 resumes; SIGTERM drains and exits.

As a systemd service: ferry connector install-service --help
`,
    )
    // `ferry connector install-service ...`; without a subcommand name the connector itself runs (the action).
    .addCommand(installServiceCommand())
    .action(async (o) => {
      // Loaded here so `ferry relay` never pays for the connector's modules (memory).
      const { startConnector } = await import("../connector/connector.js");
      const { loadConnectorSettings } = await import("../connector/connector-config.js");
      if (o.key) process.stderr.write(`${argvSecretWarning("--key", "FERRY_CONNECTOR_KEY or --key-file")}\n`);
      const settings = loadConnectorSettings(o);
      const log = createLogger({ level: settings.logLevel, name: "connector" });
      const connector = startConnector(settings, log);
      let stopped: Promise<void> | undefined;
      const stop = () => (stopped ??= connector.stop());
      onShutdown(stop);
      // The local admin's switches: pause/resume without a restart, and a fresh audit file after logrotate.
      process.on("SIGUSR1", () => connector.pause("SIGUSR1"));
      process.on("SIGUSR2", () => connector.resume("SIGUSR2"));
      if (settings.auditLog) process.on("SIGHUP", () => connector.reopenAuditLog());
      const exitAfter = (code: number) => () =>
        stop().then(
          () => process.exit(code),
          () => process.exit(1),
        );
      // --for: the window ended; drain like SIGTERM, and exit 0 (it went as planned).
      void connector.windowEnded.then(exitAfter(0));
      // No control endpoint when one was asked for is no pause switch: stop rather than run without it.
      connector.controlUrl.catch(exitAfter(1));
    });
}
