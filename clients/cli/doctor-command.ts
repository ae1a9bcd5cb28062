import { Command } from "commander";
import { FerryError } from "../../core/errors.js";
import { parseDuration } from "../../core/duration.js";
import { argvSecretWarning, readSecretFile } from "../../core/secret-file.js";
import { collect, EXIT_SERVER } from "./run.js";

interface DoctorFlags {
  relay?: string;
  key?: string;
  keyFile?: string;
  proxy?: string;
  ca?: string;
  insecureSkipVerify?: boolean;
  target?: string[];
  config?: string;
  timeout: string;
  json?: boolean;
  certs?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  publicHost?: string[];
  baseDomain?: string;
}

export function doctorCommand(): Command {
  return new Command("doctor")
    .description("Check the connection to a relay step by step (DNS, TCP, proxy, TLS, HTTP/2, version, key, round trip) and the targets.")
    .option("--relay <url>", "relay URL, http:// or https://")
    .option("--key-file <file>", "file holding the connector key to check (no traffic is taken); or set FERRY_CONNECTOR_KEY")
    .option("--key <secret>", "the key on the command line (visible in ps: prefer FERRY_CONNECTOR_KEY or --key-file)")
    .option("--proxy <url>", "HTTP proxy: http://[user:pass@]host:port (default: HTTPS_PROXY/HTTP_PROXY, NO_PROXY honoured)")
    .option("--ca <file>", "PEM CA certificate(s) to trust for the relay instead of the system's")
    .option("--insecure-skip-verify", "do not verify the relay's certificate (reported as a warning)")
    .option("--target <name=url>", "a target to check from this machine (repeatable)", collect)
    .option("--config <file>", "a connector's config file: check its relays, key, proxy, CA and targets")
    .option("--timeout <duration>", "time each step may take", "5s")
    .option("--json", "print the report as JSON")
    .option("--certs", "instead: check the relay's own certificate files (with --tls-cert and --tls-key)")
    .option("--tls-cert <file>", "with --certs: the relay's PEM certificate chain")
    .option("--tls-key <file>", "with --certs: its private key")
    .option("--public-host <name>", "with --certs: a name clients use to reach the relay (repeatable)", collect)
    .option("--base-domain <domain>", "with --certs: the relay's --base-domain")
    .addHelpText(
      "after",
      `
Exit code: 0 when every check passed, 2 when one failed, 1 for a usage error.

Examples:
  FERRY_CONNECTOR_KEY=fck_... ferry doctor --relay https://relay.example.com
  ferry doctor --certs --tls-cert /etc/ferry/fullchain.pem --tls-key /etc/ferry/key.pem --public-host relay.example.com
  ferry doctor --config /etc/ferry/connector.yaml
  HTTPS_PROXY=http://proxy.corp:3128 ferry doctor --relay https://relay.example.com --ca company-root.pem
`,
    )
    .action(async (o: DoctorFlags) => {
      if (o.certs) return certs(o);
      if (o.key) process.stderr.write(`${argvSecretWarning("--key", "FERRY_CONNECTOR_KEY or --key-file")}\n`);
      const { runDoctor } = await import("../doctor/doctor.js");
      const { formatReport } = await import("../doctor/report.js");
      const timeoutMs = duration(o.timeout);
      const runs = await doctorRuns(o);
      let ok = true;
      const reports = [];
      for (const run of runs) {
        const report = await runDoctor({ ...run, timeoutMs, env: process.env });
        ok &&= report.ok;
        reports.push({ relay: run.relay.origin, ...report });
      }
      if (o.json) process.stdout.write(`${JSON.stringify(reports.length === 1 ? reports[0] : reports, null, 2)}\n`);
      else process.stdout.write(`${reports.map((r) => `${reports.length > 1 ? `${r.relay}\n` : ""}${formatReport(r)}`).join("\n\n")}\n`);
      if (!ok) process.exitCode = EXIT_SERVER;
    });
}

/** The relay side: its own certificate files, checked as the relay checks them at start and on reload. */
async function certs(o: DoctorFlags): Promise<void> {
  if (!o.tlsCert || !o.tlsKey) throw usage("--certs needs --tls-cert and --tls-key");
  const { checkCertFiles, formatCertFiles } = await import("../doctor/cert-files.js");
  const report = checkCertFiles({ tlsCert: o.tlsCert, tlsKey: o.tlsKey, publicHost: o.publicHost, baseDomain: o.baseDomain });
  process.stdout.write(`${formatCertFiles(report, o.json)}\n`);
  if (!report.ok) process.exitCode = EXIT_SERVER;
}

/** One run per relay: from a connector's config file, or from the flags. */
async function doctorRuns(o: DoctorFlags) {
  const { loadConnectorSettings } = await import("../connector/connector-config.js");
  if (o.key && o.keyFile) throw usage("give --key or --key-file, not both");
  if (o.keyFile) o = { ...o, key: readSecretFile(o.keyFile, "--key-file", (line) => process.stderr.write(`${line}\n`)) };
  if (o.config) {
    const s = loadConnectorSettings({ config: o.config, relay: o.relay ? [o.relay] : undefined, key: o.key, proxy: o.proxy, ca: o.ca, target: o.target });
    return s.relays.map((relay) => ({ relay, key: s.key, proxy: s.proxy, ca: s.ca, insecureSkipVerify: s.insecureSkipVerify || o.insecureSkipVerify, targets: s.targets }));
  }
  if (!o.relay) throw usage("give --relay URL (or --config with a connector's config file)");
  // The connector's own validation, with a placeholder key when none is given: only the relay and targets matter here.
  const key = o.key ?? process.env.FERRY_CONNECTOR_KEY;
  const s = loadConnectorSettings(
    { relay: [o.relay], key: key ?? PLACEHOLDER_KEY, target: o.target?.length ? o.target : ["none=http://127.0.0.1:9"], proxy: o.proxy, ca: o.ca },
    {},
  );
  return [{ relay: s.relays[0]!, key, proxy: s.proxy, ca: s.ca, insecureSkipVerify: o.insecureSkipVerify, targets: o.target?.length ? s.targets : [] }];
}

/** Shaped like a connector key so validation passes; never sent (a run without --key skips the key check). */
const PLACEHOLDER_KEY = `fck_${"0".repeat(16)}_${"A".repeat(43)}`;

function duration(text: string): number {
  try {
    return parseDuration(text);
  } catch {
    throw usage(`--timeout "${text}" is not a duration (e.g. 5s)`);
  }
}

function usage(message: string): FerryError {
  return new FerryError("invalid_argument", "usage", message);
}
