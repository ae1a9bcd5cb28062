import { Command } from "commander";
import { createLogger } from "../sdk/logger.js";
import { collect, onShutdown } from "./run.js";

export function connectorCommand(): Command {
  return new Command("connector")
    .description("Run a connector on-premises: dials the relay (outbound only) and forwards its requests to local targets.")
    .option("--relay <url>", "relay URL, http:// or https:// (repeatable; tunnels spread over them)", collect)
    .option("--key <secret>", "connector key (fck_...); or set FERRY_CONNECTOR_KEY")
    .option("--target <name=url>", "a target: NAME=http://host:port[/base] (repeatable)", collect)
    .option("--config <file>", "YAML or JSON file with the same settings (flags override it)")
    .option("--tunnels <n>", "tunnel streams to keep open (default 2)")
    .option("--id <id>", "stable connector id (default: random per start)")
    .option("--max-concurrent <n>", "most exchanges at once per tunnel, open WebSockets included (default 1024)")
    .option("--reconnect-min <duration>", "first reconnect delay ceiling (default 500ms)")
    .option("--reconnect-max <duration>", "reconnect delay cap (default 20s)")
    .option("--grace <duration>", "on SIGTERM, how long in-flight exchanges may take (default 30s)")
    .option("--log-level <level>", "trace, debug, info, warn or error (default info)")
    .addHelpText(
      "after",
      `
Example:
  ferry connector --relay https://relay.example.com --key fck_... --target crm=http://10.0.0.5:8080

Config file (YAML; unknown keys are rejected):
  relays: [https://relay-a.example.com, https://relay-b.example.com]
  key: fck_...
  targets:
    - name: crm
      url: http://10.0.0.5:8080
  tunnels: 2
  reconnectMax: 20s
`,
    )
    .action(async (o) => {
      // Loaded here so `ferry relay` never pays for the connector's modules (memory).
      const { startConnector } = await import("../connector/connector.js");
      const { loadConnectorSettings } = await import("../connector/connector-config.js");
      const settings = loadConnectorSettings(o);
      const log = createLogger({ level: settings.logLevel, name: "connector" });
      const connector = startConnector(settings, log);
      onShutdown(async () => {
        await connector.stop();
      });
    });
}
