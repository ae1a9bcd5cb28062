import { randomBytes } from "node:crypto";
import { Command } from "commander";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../../core/logger.js";
import { parseListen } from "../../services/relay/listen-address.js";
import { onShutdown } from "./run.js";

/** `ferry demo`: relay, tenant, connector and a sample target in one process, and a curl line that works. */
export function demoCommand(): Command {
  return new Command("demo")
    .description("Start a relay, a tenant, a connector and a sample on-prem target in one process, and print a curl command.")
    .option("--listen <host:port>", "relay address", "127.0.0.1:0")
    .option("--log-level <level>", "log level", "warn")
    .action(async (o) => {
      const { startConnector } = await import("../connector/connector.js");
      const { loadConnectorSettings } = await import("../connector/connector-config.js");
      const { runRelay } = await import("../../services/relay/run-relay.js");
      const log = createLogger({ level: o.logLevel, name: "demo" });
      const { host, port } = parseListen(o.listen);
      const dataDir = mkdtempSync(join(tmpdir(), "ferry-demo-"));
      const target = await sampleTarget();
      const running = await runRelay({ log, listen: { host, port }, relay: { dataDir, adminToken: randomBytes(24).toString("hex") } });
      const { relay, url } = running;
      await relay.catalog.createTenant("demo");
      const { secret } = await relay.catalog.createKey("demo", "ferry demo");
      const connector = startConnector(
        loadConnectorSettings({ relay: [url], key: secret, target: [`hello=${target.url}`], logLevel: o.logLevel }, {}),
        log,
      );
      await connector.waitConnected(1);
      process.stdout.write(
        [
          "Ferry demo is running: relay, tenant \"demo\", a connector and a sample target \"hello\".",
          "",
          "Try:",
          `  curl -i ${url}/relay/demo/hello/`,
          `  curl -i -X POST --data-binary 'hi there' ${url}/relay/demo/hello/echo`,
          "",
          "Ctrl-C stops everything.",
          "",
        ].join("\n"),
      );
      onShutdown(async () => {
        await connector.stop();
        await running.stop({ graceMs: 5_000, forceAfterMs: 1_000 });
        target.server.close();
        rmSync(dataDir, { recursive: true, force: true });
      });
    });
}

/** A tiny stand-in for an on-prem app: a greeting at /, an echo at /echo. */
async function sampleTarget(): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    if (req.url?.startsWith("/echo")) {
      res.writeHead(200, { "content-type": req.headers["content-type"] ?? "application/octet-stream" });
      req.pipe(res);
      return;
    }
    const body = JSON.stringify(
      {
        message: "Hello from the on-prem sample target",
        method: req.method,
        path: req.url,
        forwardedFor: req.headers["x-forwarded-for"],
        forwardedHost: req.headers["x-forwarded-host"],
      },
      null,
      2,
    );
    res.writeHead(200, { "content-type": "application/json" });
    res.end(`${body}\n`);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}
