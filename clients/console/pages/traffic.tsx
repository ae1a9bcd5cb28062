import { useEffect, useRef, useState } from "preact/hooks";
import type { Capture, CapturedExchange, ExchangeSummary, ReplayExchangeResponse } from "../../../gen/ferry/admin/v1/admin_service_pb.js";
import { errorText } from "../lib/api.js";
import { useCaller } from "../lib/caller.js";
import { Dialog, ErrorNote, Table, useLoad } from "../components/ui.js";
import { bodyText, bytes, duration, when } from "../lib/format.js";

/** Rows kept on the page: the newest; older ones leave the DOM (the stream goes on). */
const MAX_ROWS = 500;
const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

export function TrafficPage() {
  return (
    <>
      <LiveTraffic />
      <Captures />
    </>
  );
}

function LiveTraffic() {
  const { api, tenant: own } = useCaller();
  const [filter, setFilter] = useState({ tenant: own ?? "", target: "", status: "" });
  const [applied, setApplied] = useState(filter);
  const [rows, setRows] = useState<ExchangeSummary[]>([]);
  const [dropped, setDropped] = useState(0);
  const [paused, setPaused] = useState(false);
  const [state, setState] = useState<"connecting" | "watching" | "stopped">("connecting");
  const [error, setError] = useState<string>();
  const pausedRef = useRef(paused);
  pausedRef.current = paused;

  useEffect(() => {
    const abort = new AbortController();
    setState("connecting");
    setError(undefined);
    void (async () => {
      try {
        for await (const m of api.watchExchanges(applied, { signal: abort.signal })) {
          setState("watching");
          if (m.dropped > 0n) setDropped((d) => d + Number(m.dropped));
          // Paused: the stream keeps being read (the relay never waits for us), the rows stay still.
          if (m.exchanges.length > 0 && !pausedRef.current) setRows((old) => [...m.exchanges.reverse(), ...old].slice(0, MAX_ROWS));
        }
        setState("stopped");
      } catch (err) {
        if (abort.signal.aborted) return;
        setState("stopped");
        setError(errorText(err));
      }
    })();
    return () => abort.abort();
  }, [applied]);

  return (
    <section aria-label="Live traffic">
      <form
        class="row"
        onSubmit={(e) => {
          e.preventDefault();
          setRows([]);
          setDropped(0);
          setApplied(filter);
        }}
      >
        <label class="inline">
          Tenant
          <input value={filter.tenant} disabled={own !== undefined} onInput={(e) => setFilter({ ...filter, tenant: e.currentTarget.value })} />
        </label>
        <label class="inline">
          Target
          <input value={filter.target} onInput={(e) => setFilter({ ...filter, target: e.currentTarget.value })} />
        </label>
        <label class="inline">
          Status
          <select value={filter.status} onChange={(e) => setFilter({ ...filter, status: e.currentTarget.value })}>
            <option value="">all</option>
            <option value="2xx">2xx</option>
            <option value="3xx">3xx</option>
            <option value="4xx">4xx</option>
            <option value="5xx">5xx</option>
            <option value="error">Ferry errors</option>
          </select>
        </label>
        <button type="submit" class="primary">
          Apply
        </button>
        <button type="button" aria-pressed={paused} onClick={() => setPaused(!paused)}>
          {paused ? "Resume" : "Pause"}
        </button>
        <span class="muted" data-testid="watch-state" role="status">
          {state}
          {dropped > 0 ? ` · ${dropped} missed (this page read too slowly)` : ""}
        </span>
      </form>
      <ErrorNote error={error} />
      <Table label="Exchanges" head={["Time", "Node", "Tenant", "Target", "Method", "Path", "Status", "Duration", "In", "Out", "Client", "Principal"]}>
        {rows.map((e) => (
          <tr data-testid="exchange-row" key={e.exchangeId}>
            <td>{when(e.time).split(", ").at(-1)}</td>
            <td>{e.nodeId}</td>
            <td>{e.tenant}</td>
            <td>{e.target}</td>
            <td>{e.method}</td>
            <td class="path">{e.path}</td>
            <td class={e.code ? "bad" : e.status >= 500 ? "bad" : e.status >= 400 ? "warn" : ""}>{e.code ? `${e.status || ""} ${e.code}` : e.status}</td>
            <td>{duration(e.duration)}</td>
            <td>{bytes(e.bytesIn)}</td>
            <td>{bytes(e.bytesOut)}</td>
            <td>{e.clientAddress}</td>
            <td>{e.principal}</td>
          </tr>
        ))}
      </Table>
    </section>
  );
}

function Captures() {
  const { api, canWrite, tenant: own } = useCaller();
  const list = useLoad(async () => (await api.listCaptures({})).captures, [], 3_000);
  const [form, setForm] = useState({ tenant: own ?? "", target: "", minutes: "10" });
  const [open, setOpen] = useState<string>();
  const [error, setError] = useState<string>();
  return (
    <section aria-label="Captures">
      <h2>Captures</h2>
      <p class="muted">Headers and the first bytes of each body of one target, for a limited time, credentials redacted, kept in memory on the node that recorded them.</p>
      {canWrite && (
        <form
          class="row"
          onSubmit={(e) => {
            e.preventDefault();
            api.startCapture({ tenant: form.tenant, target: form.target, duration: { seconds: BigInt(Math.round(Number(form.minutes) * 60)), nanos: 0 } }).then(
              (r) => {
                setError(undefined);
                list.reload();
                setOpen(r.capture?.captureId);
              },
              (err: unknown) => setError(errorText(err)),
            );
          }}
        >
          <label class="inline">
            Tenant
            <input value={form.tenant} disabled={own !== undefined} onInput={(e) => setForm({ ...form, tenant: e.currentTarget.value })} required />
          </label>
          <label class="inline">
            Target
            <input value={form.target} onInput={(e) => setForm({ ...form, target: e.currentTarget.value })} required />
          </label>
          <label class="inline">
            Minutes
            <input value={form.minutes} inputMode="numeric" size={4} onInput={(e) => setForm({ ...form, minutes: e.currentTarget.value })} />
          </label>
          <button type="submit" class="primary">
            Start capture
          </button>
        </form>
      )}
      <ErrorNote error={error ?? list.error} />
      <Table label="Captures" head={["Capture", "Tenant", "Target", "Started", "Until", "Exchanges", "Memory", "Dropped", "By", "Actions"]}>
        {(list.data ?? []).map((c) => (
          <tr data-testid="capture-row">
            <td>
              <code>{c.captureId}</code>
            </td>
            <td>{c.tenant}</td>
            <td>{c.target}</td>
            <td>{when(c.startTime)}</td>
            <td>{c.active ? when(c.endTime) : "ended"}</td>
            <td>{c.exchanges}</td>
            <td>
              {bytes(c.bytes)} / {bytes(c.maxBytes)}
            </td>
            <td>{String(c.dropped)}</td>
            <td>{c.actor}</td>
            <td class="actions">
              <button type="button" onClick={() => setOpen(c.captureId)}>
                Open
              </button>
              {canWrite && c.active && (
                <button type="button" onClick={() => void api.stopCapture({ captureId: c.captureId }).then(list.reload, (err: unknown) => setError(errorText(err)))}>
                  Stop
                </button>
              )}
            </td>
          </tr>
        ))}
      </Table>
      {open && <CaptureView captureId={open} />}
    </section>
  );
}

function CaptureView({ captureId }: { captureId: string }) {
  const { api } = useCaller();
  const got = useLoad(() => api.getCapture({ captureId }), [captureId], 2_000);
  const [chosen, setChosen] = useState<CapturedExchange>();
  const capture: Capture | undefined = got.data?.capture;
  return (
    <section aria-label={`Capture ${captureId}`}>
      <h3>
        Capture {captureId} {capture ? `· ${capture.tenant}/${capture.target}` : ""}
      </h3>
      <ErrorNote error={got.error} />
      <Table label="Captured exchanges" head={["Time", "Method", "Path", "Status", "Duration", "Principal", ""]}>
        {(got.data?.exchanges ?? []).map((x) => (
          <tr data-testid="captured-row">
            <td>{when(x.summary?.time).split(", ").at(-1)}</td>
            <td>{x.summary?.method}</td>
            <td class="path">
              {x.summary?.path}
              {x.query ? `?${x.query}` : ""}
            </td>
            <td>{x.summary?.code || x.summary?.status}</td>
            <td>{duration(x.summary?.duration)}</td>
            <td>{x.summary?.principal}</td>
            <td>
              <button type="button" onClick={() => setChosen(x)}>
                Inspect
              </button>
            </td>
          </tr>
        ))}
      </Table>
      {chosen && <ExchangeDetail captureId={captureId} exchange={chosen} onClose={() => setChosen(undefined)} />}
    </section>
  );
}

function ExchangeDetail({ captureId, exchange, onClose }: { captureId: string; exchange: CapturedExchange; onClose: () => void }) {
  const { api, isAdmin } = useCaller();
  const s = exchange.summary!;
  const [confirm, setConfirm] = useState(false);
  const [replay, setReplay] = useState<ReplayExchangeResponse>();
  const [error, setError] = useState<string>();
  const unsafe = !SAFE.has(s.method);
  return (
    <Dialog title={`${s.method} ${s.path}`} onClose={onClose}>
      <div class="detail" data-testid="exchange-detail">
        <p>
          <code class="wrap">
            {s.method} {s.path}
            {exchange.query ? `?${exchange.query}` : ""}
          </code>
        </p>
        <p>
          {s.tenant}/{s.target} · {s.code || s.status} · {duration(s.duration)} · {s.principal} · node {s.nodeId}
        </p>
        <h3>Request headers</h3>
        <Headers fields={exchange.requestHeaders} />
        <h3>Request body{exchange.requestBodyTruncated ? " (truncated)" : ""}</h3>
        <pre data-testid="request-body">{bodyText(exchange.requestBody)}</pre>
        <h3>Response headers</h3>
        <Headers fields={exchange.responseHeaders} />
        <h3>Response body{exchange.responseBodyTruncated ? " (truncated)" : ""}</h3>
        <pre data-testid="response-body">{bodyText(exchange.responseBody)}</pre>
        {isAdmin && (
          <div class="replay">
            {unsafe && (
              <label class="inline">
                <input type="checkbox" checked={confirm} onChange={(e) => setConfirm(e.currentTarget.checked)} />
                Replay this {s.method} even though it may repeat what it did
              </label>
            )}
            <button
              type="button"
              class="primary"
              disabled={unsafe && !confirm}
              onClick={() => {
                api.replayExchange({ captureId, exchangeId: s.exchangeId, confirm }).then(setReplay, (err: unknown) => setError(errorText(err)));
              }}
            >
              Replay
            </button>
            <ErrorNote error={error} />
            {replay && (
              <div data-testid="replay-result">
                <p>
                  Replayed: <strong>{replay.summary?.code || replay.summary?.status}</strong> in {duration(replay.summary?.duration)}
                </p>
                <pre>{bodyText(replay.responseBody)}</pre>
              </div>
            )}
          </div>
        )}
        <div class="actions">
          <button type="button" onClick={onClose}>
            Close
          </button>
        </div>
      </div>
    </Dialog>
  );
}

function Headers({ fields }: { fields: { name: string; value: string }[] }) {
  return (
    <Table label="Headers" head={["Name", "Value"]}>
      {fields.map((f) => (
        <tr>
          <td>{f.name}</td>
          <td class={f.value === "[redacted]" ? "muted" : ""}>{f.value}</td>
        </tr>
      ))}
    </Table>
  );
}
