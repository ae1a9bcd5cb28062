import { toJson } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { useState } from "preact/hooks";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { type AuditEvent, AuditEventSchema, ListAuditEventsRequestSchema } from "../../../gen/ferry/admin/v1/admin_service_pb.js";
import { errorText } from "../lib/api.js";
import { useCaller } from "../lib/caller.js";
import { ErrorNote, Table } from "../components/ui.js";
import { when } from "../lib/format.js";

/** Most events one export reads: enough for an incident, bounded for the browser and the relay. */
const EXPORT_MAX = 20_000;

export function AuditPage() {
  const { api, tenant: own } = useCaller();
  const [filter, setFilter] = useState({ tenant: own ?? "", actor: "", action: "", start: "", end: "" });
  const [events, setEvents] = useState<AuditEvent[]>([]);
  const [next, setNext] = useState("");
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const request = (pageToken: string): MessageInitShape<typeof ListAuditEventsRequestSchema> => ({
    tenant: filter.tenant,
    actor: filter.actor,
    action: filter.action,
    startTime: filter.start ? timestampFromDate(new Date(filter.start)) : undefined,
    endTime: filter.end ? timestampFromDate(new Date(filter.end)) : undefined,
    pageSize: 100,
    pageToken,
  });
  const load = (pageToken: string) => {
    api.listAuditEvents(request(pageToken)).then(
      (r) => {
        setEvents((old) => (pageToken ? [...old, ...r.events] : r.events));
        setNext(r.nextPageToken);
        setError(undefined);
      },
      (err: unknown) => setError(errorText(err)),
    );
  };
  const exportLines = async () => {
    setBusy(true);
    try {
      const lines: string[] = [];
      let token = "";
      do {
        const r = await api.listAuditEvents({ ...request(token), pageSize: 1000 });
        for (const e of r.events) lines.push(JSON.stringify(toJson(AuditEventSchema, e)));
        token = r.nextPageToken;
      } while (token && lines.length < EXPORT_MAX);
      const url = URL.createObjectURL(new Blob([lines.map((l) => `${l}\n`).join("")], { type: "application/jsonl" }));
      const a = document.createElement("a");
      a.href = url;
      a.download = `ferry-audit-${new Date().toISOString().slice(0, 19)}.jsonl`;
      a.click();
      URL.revokeObjectURL(url);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  const field = (key: keyof typeof filter, label: string, date = false) => {
    const props = {
      value: filter[key],
      disabled: key === "tenant" && own !== undefined,
      onInput: (e: { currentTarget: HTMLInputElement }) => setFilter({ ...filter, [key]: e.currentTarget.value }),
    };
    return (
      <label class="inline">
        {label}
        {date ? <input type="datetime-local" {...props} /> : <input type="text" {...props} />}
      </label>
    );
  };
  return (
    <>
      <form
        class="row"
        onSubmit={(e) => {
          e.preventDefault();
          load("");
        }}
      >
        {field("tenant", "Tenant")}
        {field("actor", "Actor")}
        {field("action", "Action prefix")}
        {field("start", "From", true)}
        {field("end", "To", true)}
        <button type="submit" class="primary">
          Search
        </button>
        <button type="button" disabled={busy} onClick={() => void exportLines()}>
          {busy ? "Exporting…" : "Export JSON lines"}
        </button>
      </form>
      <ErrorNote error={error} />
      <Table label="Audit events" head={["Time", "Action", "Actor", "Tenant", "Details"]}>
        {events.map((e) => (
          <tr>
            <td>{when(e.time)}</td>
            <td>{e.action}</td>
            <td>{e.actor}</td>
            <td>{e.tenant}</td>
            <td>
              <code class="wrap">{e.details ? JSON.stringify((toJson(AuditEventSchema, e) as { details?: unknown }).details) : ""}</code>
            </td>
          </tr>
        ))}
      </Table>
      {next && (
        <button type="button" onClick={() => load(next)}>
          More
        </button>
      )}
    </>
  );
}
