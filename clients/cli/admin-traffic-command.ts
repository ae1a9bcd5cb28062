import { toJson } from "@bufbuild/protobuf";
import type { Duration } from "@bufbuild/protobuf/wkt";
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
          if (m.dropped > 0n) process.stderr.write(`${m.dropped} exchanges dropped: this terminal read too slowly\n`);
          if (!watching) process.stderr.write("watching exchanges (Ctrl-C to stop)\n");
          watching = true;
          for (const e of m.exchanges) out(o.json ? JSON.stringify(toJson(ExchangeSummarySchema, e)) : exchangeLine(e));
        }
      } catch (err) {
        if (!abort.signal.aborted) throw err;
      }
    },
    (cmd) =>
      cmd
        .option("--tenant <name>", "one tenant only")
        .option("--target <name>", "one target only")
        .option("--status <class>", "2xx, 3xx, 4xx, 5xx, an exact status such as 404, or error (Ferry failed it)")
        .addHelpText("after", "\nExample:\n  ferry admin traffic watch --tenant acme --status 5xx --json | jq .path\n"),
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
    (cmd) => cmd.option("--tenant <name>", "one tenant only"),
  );

  const capture = noun(traffic, "capture", "Record one target's exchanges (headers and the first bytes of the bodies, credentials redacted) for a while.");
  verb(
    capture,
    "start <tenant> <target>",
    "Start recording a target's exchanges on the node that answers.",
    async (c, o, [tenant, target]) => {
      const forMs = typeof o.for === "string" ? parseDuration(o.for) : undefined;
      if (forMs !== undefined && !(forMs > 0)) throw usage(`--for "${String(o.for)}" is not a positive duration`);
      const bodyBytes = o.bodyBytes === undefined ? 0 : Number(o.bodyBytes);
      if (!Number.isInteger(bodyBytes) || bodyBytes < 0) throw usage(`--body-bytes "${String(o.bodyBytes)}" is not a whole number`);
      const { capture: cap } = await c.startCapture({ tenant, target, duration: forMs === undefined ? undefined : durationFromMs(forMs), bodyBytes });
      print(o, CaptureSchema, cap!, () => `capture ${cap!.captureId} records ${tenant}/${target} until ${when(cap!.endTime)} (node ${cap!.captureId.split("-")[0]})`);
    },
    (cmd) =>
      cmd
        .option("--for <duration>", "how long it records (default 10m, at most 1h)")
        .option("--body-bytes <n>", "bytes kept of each body (default 4096, at most 65536)")
        .addHelpText("after", "\nExample:\n  ferry admin traffic capture start acme crm --for 10m\n"),
  );
  verb(capture, "stop <captureId>", "Stop a capture; what it holds stays readable for an hour.", async (c, o, [captureId]) => {
    const { capture: cap } = await c.stopCapture({ captureId });
    print(o, CaptureSchema, cap!, () => `stopped capture ${cap!.captureId}: ${cap!.exchanges} exchanges kept`);
  });
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
    (cmd) => cmd.option("--tenant <name>", "one tenant only"),
  );
  verb(capture, "show <captureId>", "Show a capture's exchanges, newest first, with their headers and bodies.", async (c, o, [captureId]) => {
    const r = await c.getCapture({ captureId });
    print(o, GetCaptureResponseSchema, r, () => r.exchanges.map(capturedText).join("\n\n") || "no exchange captured yet");
  });

  verb(
    traffic,
    "replay <captureId> <exchangeId>",
    "Send a captured request to its target again, as this admin (admin tokens only).",
    async (c, o, [captureId, exchangeId]) => {
      const r = await c.replayExchange({ captureId, exchangeId, confirm: o.confirm === true });
      print(o, ReplayExchangeResponseSchema, r, () =>
        [`${r.summary?.status ?? 0} ${r.summary?.code ?? ""}`.trim(), ...r.responseHeaders.map((h) => `${h.name}: ${h.value}`), "", body(r.responseBody, r.responseBodyTruncated)].join("\n"),
      );
    },
    (cmd) =>
      cmd
        .option("--confirm", "replay a method other than GET, HEAD or OPTIONS (it may repeat what it did)")
        .addHelpText("after", "\nExample:\n  ferry admin traffic replay node1-0123456789ab 5f1c...e2 --confirm\n"),
  );

  verb(admin, "whoami", "Show the token in use: its id and role, and the node that answered.", async (c, o) => {
    const r = await c.getCaller({});
    print(o, GetCallerResponseSchema, r, () => `token ${r.token?.tokenId} (${r.token?.role}), node ${r.nodeId}`);
  });
}

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

function duration(d: Duration | undefined): string {
  return d ? formatDuration(msFromDuration(d) ?? 0) : "-";
}

/** One line per exchange: when, where, what, how it ended, who. */
export function exchangeLine(e: ExchangeSummary): string {
  const outcome = e.code ? `${e.status || "-"} ${e.code}` : String(e.status);
  return [when(e.time), e.nodeId, `${e.tenant}/${e.target}`, e.method, e.path, outcome, duration(e.duration), `${e.bytesIn}B in`, `${e.bytesOut}B out`, e.principal].join("  ");
}

function capturedText(x: CapturedExchange): string {
  const s = x.summary;
  const lines = [
    `${s ? exchangeLine(s) : ""}`,
    `  exchange ${s?.exchangeId ?? ""}`,
    `> ${s?.method ?? ""} ${s?.path ?? ""}${x.query ? `?${x.query}` : ""}`,
    ...x.requestHeaders.map((h) => `> ${h.name}: ${h.value}`),
    ...(x.requestBody.length > 0 ? [`> ${body(x.requestBody, x.requestBodyTruncated)}`] : []),
    ...x.responseHeaders.map((h) => `< ${h.name}: ${h.value}`),
    ...(x.responseBody.length > 0 ? [`< ${body(x.responseBody, x.responseBodyTruncated)}`] : []),
  ];
  return lines.join("\n");
}

/** A body as text when it is printable, else its size. */
function body(bytes: Uint8Array, truncated: boolean): string {
  const text = Buffer.from(bytes).toString("utf8");
  const printable = !/[\x00-\x08\x0e-\x1f\ufffd]/.test(text);
  return `${printable ? text : `(${bytes.length} bytes of binary)`}${truncated ? " [truncated]" : ""}`;
}

