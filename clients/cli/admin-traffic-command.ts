import { once } from "node:events";
import { toJson } from "@bufbuild/protobuf";
import type { Duration } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Command } from "commander";
import {
  type CapturedExchange,
  CaptureSchema,
  type ExchangeSummary,
  ExchangeSummarySchema,
  GetCallerResponseSchema,
  GetCaptureResponseSchema,
  GetTrafficHistoryResponseSchema,
  ReplayExchangeResponseSchema,
} from "../../gen/ferry/admin/v1/admin_service_pb.js";
import { durationFromMs, formatDuration, msFromDuration, parseDuration } from "../../core/duration.js";
import { parseSize } from "../../core/size.js";
import { out, print, table, when } from "./admin-output.js";
import { noun, usage, verb } from "./admin-verbs.js";

/** `ferry admin traffic ...` and `ferry admin whoami`: live traffic, history, captures and replays. */
export function trafficCommands(admin: Command): void {
  const traffic = noun(admin, "traffic", "Live traffic from every relay node, the last 15 minutes, captures and replays.");
  verb(
    traffic,
    "watch",
    "Print each exchange as it finishes, from every node, until Ctrl-C.",
    async (c, o) => {
      const abort = new AbortController();
      process.once("SIGINT", () => abort.abort());
      process.once("SIGTERM", () => abort.abort());
      // `| head` closes stdout: that ends the watch, quietly.
      process.stdout.on("error", () => abort.abort());
      let watching = false;
      const stream = c.watchExchanges({ tenant: str(o.tenant), target: str(o.target), status: str(o.status) }, { signal: abort.signal });
      try {
        for await (const m of stream) {
          if (!watching) process.stderr.write("watching exchanges (Ctrl-C to stop)\n");
          watching = true;
          if (m.dropped > 0n) process.stderr.write(`${m.dropped} exchanges dropped: this terminal read too slowly\n`);
          for (const e of m.exchanges) {
            // Wait while the terminal is behind, so the relay (which drops and counts) holds the backlog, not this process.
            if (!process.stdout.write(`${o.json ? JSON.stringify(toJson(ExchangeSummarySchema, e)) : exchangeLine(e)}\n`)) {
              await once(process.stdout, "drain", { signal: abort.signal });
            }
          }
        }
      } catch (err) {
        if (abort.signal.aborted) return;
        // Refusals of the request itself (a bad filter) read as they are; a break after it was in place says so.
        if (watching && err instanceof ConnectError) throw new ConnectError(`the watch ended: ${err.rawMessage} (the relay stopped or the connection broke)`, err.code);
        throw err;
      }
      if (!abort.signal.aborted) throw new ConnectError("the relay ended the watch", Code.Unavailable);
    },
    (cmd) =>
      cmd
        .option("--tenant <name>", "one tenant only")
        .option("--target <name>", "one target only")
        .option("--status <class>", "2xx, 3xx, 4xx, 5xx, an exact status such as 404, or error (Ferry failed it)")
        .addHelpText(
          "after",
          `
"watching exchanges" on stderr once the watch is in place; "N exchanges dropped" on stderr when the relay had to
skip some because this terminal read too slowly (--json too: stdout holds only exchanges). Ctrl-C ends it (exit 0);
a watch the relay or the network ends exits 2.

Examples:
  ferry admin traffic watch --tenant acme --status 5xx
  ferry admin traffic watch --target crm --json | jq -r .path
`,
        ),
  );

  verb(
    traffic,
    "history",
    "This node's traffic of the last 15 minutes, in 10-second intervals.",
    async (c, o) => {
      const r = await c.getTrafficHistory({ tenant: str(o.tenant) });
      print(o, GetTrafficHistoryResponseSchema, r, () =>
        table([
          ["START", "REQUESTS", "ERRORS", "P95"],
          ...r.buckets.filter((b) => b.requests > 0n).map((b) => [when(b.startTime), String(b.requests), String(b.errors), duration(b.latencyP95)]),
        ]) + `\n(node ${r.nodeId}; intervals without traffic left out)`,
      );
    },
    (cmd) => cmd.option("--tenant <name>", "one tenant only").addHelpText("after", example("ferry admin traffic history --tenant acme")),
  );

  const capture = noun(traffic, "capture", "Record one target's exchanges (headers and the first bytes of the bodies, credentials redacted) for a while.");
  verb(
    capture,
    "start <tenant> <target>",
    "Start recording a target's exchanges on the node that answers.",
    async (c, o, [tenant, target]) => {
      const forMs = typeof o.for === "string" ? parseDuration(o.for) : undefined;
      if (forMs !== undefined && !(forMs > 0)) throw usage(`--for "${String(o.for)}" is not a positive duration`);
      const bodyBytes = o.bodyBytes === undefined ? 0n : parseSize(String(o.bodyBytes));
      if (bodyBytes > 0xffff_ffffn) throw usage(`--body-bytes "${String(o.bodyBytes)}" is too large`);
      const { capture: cap } = await c.startCapture({
        tenant,
        target,
        duration: forMs === undefined ? undefined : durationFromMs(forMs),
        bodyBytes: Number(bodyBytes),
      });
      print(o, CaptureSchema, cap!, () => `capture ${cap!.captureId} records ${tenant}/${target} until ${when(cap!.endTime)}${onNode(cap!.captureId)}`);
    },
    (cmd) =>
      cmd
        .option("--for <duration>", "how long it records (default 10m, at most 1h)")
        .option("--body-bytes <size>", "bytes kept of each body, e.g. 4096 or 16KiB (default 4096, at most 65536)")
        .addHelpText(
          "after",
          `
The capture lives in the memory of the node that answered: in a cluster, ask that node (its id starts the capture id).

Example:
  ferry admin traffic capture start acme crm --for 10m --body-bytes 16KiB
`,
        ),
  );
  verb(
    capture,
    "stop <captureId>",
    "Stop a capture; what it holds stays readable for an hour.",
    async (c, o, [captureId]) => {
      const { capture: cap } = await c.stopCapture({ captureId });
      print(o, CaptureSchema, cap!, () => `stopped capture ${cap!.captureId}: ${cap!.exchanges} exchanges kept`);
    },
    (cmd) => cmd.addHelpText("after", example("ferry admin traffic capture stop node1-0123456789ab")),
  );
  verb(
    capture,
    "list",
    "List the captures of the node that answers.",
    async (c, o) => {
      const { captures } = await c.listCaptures({ tenant: str(o.tenant) });
      if (o.json) return out({ captures: captures.map((x) => toJson(CaptureSchema, x)) });
      out(
        table([
          ["CAPTURE", "TENANT", "TARGET", "STATE", "UNTIL", "EXCHANGES", "DROPPED", "BY"],
          ...captures.map((x) => [x.captureId, x.tenant, x.target, x.active ? "recording" : "ended", when(x.endTime), String(x.exchanges), String(x.dropped), x.actor]),
        ]),
      );
    },
    (cmd) => cmd.option("--tenant <name>", "one tenant only").addHelpText("after", example("ferry admin traffic capture list --tenant acme")),
  );
  verb(
    capture,
    "show <captureId>",
    "Show a capture's exchanges, newest first, with their headers and bodies (> sent, < received).",
    async (c, o, [captureId]) => {
      const r = await c.getCapture({ captureId });
      print(o, GetCaptureResponseSchema, r, () => r.exchanges.map(capturedText).join("\n\n") || "no exchange captured yet");
    },
    (cmd) =>
      cmd.addHelpText(
        "after",
        `
Bodies show as text when they are printable, else as a byte count; --json has them in base64.

Examples:
  ferry admin traffic capture show node1-0123456789ab
  ferry admin traffic capture show node1-0123456789ab --json | jq -r '.exchanges[].summary.exchangeId'
`,
      ),
  );

  verb(
    traffic,
    "replay <captureId> <exchangeId>",
    "Send a captured request to its target again, as this admin (admin tokens only).",
    async (c, o, [captureId, exchangeId]) => {
      const r = await c.replayExchange({ captureId, exchangeId, confirm: o.confirm === true });
      print(o, ReplayExchangeResponseSchema, r, () =>
        [
          `${r.summary?.status ?? 0} ${safe(r.summary?.code ?? "")}`.trim(),
          ...r.responseHeaders.map((h) => `${safe(h.name)}: ${safe(h.value)}`),
          "",
          ...body(r.responseBody, r.responseBodyTruncated),
        ].join("\n"),
      );
    },
    (cmd) =>
      cmd
        .option("--confirm", "replay a method other than GET, HEAD or OPTIONS (it may repeat what it did)")
        .addHelpText(
          "after",
          `
Prints the answer's status, its headers and the start of its body.

Examples:
  ferry admin traffic replay node1-0123456789ab 5f1c...e2             # a GET, HEAD or OPTIONS
  ferry admin traffic replay node1-0123456789ab 5f1c...e2 --confirm   # any other method
`,
        ),
  );

  verb(
    admin,
    "whoami",
    "Show the token in use: its id and role, and the node that answered.",
    async (c, o) => {
      const r = await c.getCaller({});
      print(o, GetCallerResponseSchema, r, () => `token ${r.token?.tokenId} (${r.token?.role}), node ${r.nodeId}`);
    },
    (cmd) => cmd.addHelpText("after", example("ferry admin whoami --json")),
  );
}

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

function duration(d: Duration | undefined): string {
  return d ? formatDuration(msFromDuration(d) ?? 0) : "-";
}

function example(line: string): string {
  return `\nExample:\n  ${line}\n`;
}

/** " (node X)" from a capture id ("<node id>-<12 hex digits>"), so a cluster operator knows whom to ask. */
function onNode(captureId: string): string {
  const m = /^(.+)-[0-9a-f]{12}$/.exec(captureId);
  return m ? ` (node ${m[1]})` : "";
}

/** One line per exchange: when, where, what, how it ended, who. */
export function exchangeLine(e: ExchangeSummary): string {
  const outcome = e.code ? `${e.status || "-"} ${e.code}` : String(e.status);
  return [when(e.time), e.nodeId, `${e.tenant}/${e.target}`, e.method, e.path, outcome, duration(e.duration), `${e.bytesIn}B in`, `${e.bytesOut}B out`, e.principal]
    .map(safe)
    .join("  ");
}

function capturedText(x: CapturedExchange): string {
  const s = x.summary;
  const lines = [
    `${s ? exchangeLine(s) : ""}`,
    `  exchange ${s?.exchangeId ?? ""}`,
    `> ${safe(s?.method ?? "")} ${safe(`${s?.path ?? ""}${x.query ? `?${x.query}` : ""}`)}`,
    ...x.requestHeaders.map((h) => `> ${safe(h.name)}: ${safe(h.value)}`),
    ...(x.requestBody.length > 0 ? body(x.requestBody, x.requestBodyTruncated).map((l) => `> ${l}`) : []),
    ...x.responseHeaders.map((h) => `< ${safe(h.name)}: ${safe(h.value)}`),
    ...(x.responseBody.length > 0 ? body(x.responseBody, x.responseBodyTruncated).map((l) => `< ${l}`) : []),
  ];
  return lines.join("\n");
}

// What a terminal would act on rather than show (escape sequences, carriage returns, C1 controls); tab is harmless.
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/g;

/**
 * Text that came from a client or a target, as a terminal shows it: control
 * characters spelled out, so a header or a path cannot move the cursor,
 * retitle the window or hide what follows.
 */
function safe(text: string): string {
  return text.replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/** A body's lines as text when it is printable, else its size. */
function body(bytes: Uint8Array, truncated: boolean): string[] {
  // A body cut at the byte limit may end inside a character: streaming decode leaves that tail out instead of
  // turning it into U+FFFD, which would make any cut text body look binary.
  const text = new TextDecoder("utf-8").decode(bytes, { stream: truncated });
  const printable = !/[\x00-\x08\x0e-\x1f\ufffd]/.test(text);
  const lines = printable ? text.split(/\r?\n/).map(safe) : [`(${bytes.length} bytes of binary)`];
  if (truncated) lines[lines.length - 1] += " [truncated]";
  return lines;
}
