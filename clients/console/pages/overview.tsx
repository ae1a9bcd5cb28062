import { LineChart } from "../components/chart.js";
import { ErrorNote, Table, useLoad } from "../components/ui.js";
import { useCaller } from "../lib/caller.js";
import { ms, when } from "../lib/format.js";

/** Nodes, connectors, the last 15 minutes, the busiest targets and certificate warnings, refreshed every 10 s. */
export function OverviewPage() {
  const caller = useCaller();
  const { api } = caller;
  const nodes = useLoad(async () => (caller.tenant ? [] : (await api.listNodes({})).nodes), [], 10_000);
  const history = useLoad(() => api.getTrafficHistory({}), [], 10_000);
  const tenants = useLoad(async () => {
    const names = caller.tenant ? [caller.tenant] : (await api.listTenants({ pageSize: 100 })).tenants.map((t) => t.name);
    return Promise.all(
      names.map(async (name) => {
        const [connectors, stats] = await Promise.all([api.listConnectors({ tenant: name }), api.getStats({ tenant: name })]);
        return { name, connectors: connectors.connectors.length, targets: stats.entries.filter((e) => e.target !== "") };
      }),
    );
  }, [], 10_000);

  const buckets = history.data?.buckets ?? [];
  const width = ms(history.data?.bucketWidth) / 1000 || 10;
  const rps = buckets.map((b) => Number(b.requests) / width);
  const errorRate = buckets.map((b) => (Number(b.requests) > 0 ? (100 * Number(b.errors)) / Number(b.requests) : 0));
  const p95 = buckets.map((b) => ms(b.latencyP95));
  const span = [buckets[0] ? when(buckets[0].startTime).split(", ").at(-1)! : "", "now"];
  const top = (tenants.data ?? [])
    .flatMap((t) => t.targets.map((e) => ({ tenant: t.name, target: e.target, requests: Number(e.recent?.requests ?? 0n), p95: e.recent?.latencyP95 })))
    .sort((a, b) => b.requests - a.requests)
    .slice(0, 5);
  const warnings = (nodes.data ?? []).flatMap((n) => n.certificateWarnings.map((w) => `${n.nodeId}: ${w}`));
  const online = (tenants.data ?? []).reduce((n, t) => n + t.connectors, 0);

  return (
    <>
      <ErrorNote error={nodes.error ?? history.error ?? tenants.error} />
      {warnings.length > 0 && (
        <section class="warnings" aria-label="Certificate warnings">
          <h2>Certificate warnings</h2>
          <ul>
            {warnings.map((w) => (
              <li>{w}</li>
            ))}
          </ul>
        </section>
      )}
      <section class="cards">
        <div class="card">
          <span class="big" data-testid="connectors-online">
            {online}
          </span>
          connectors online
        </div>
        {!caller.tenant && (
          <div class="card">
            <span class="big">{nodes.data?.length ?? 0}</span> relay nodes
          </div>
        )}
        <div class="card">
          <span class="big">{rps.at(-2)?.toFixed(1) ?? "0"}</span> requests/s (last 10 s, node {history.data?.nodeId})
        </div>
      </section>
      <section class="charts" aria-label="Last 15 minutes">
        <LineChart title="Requests" unit="req/s" points={rps} labels={span} />
        <LineChart title="Errors" unit="%" points={errorRate} labels={span} />
        <LineChart title="p95 latency" unit="ms" points={p95} labels={span} />
      </section>
      <h2>Top targets (last 5 minutes)</h2>
      <Table label="Top targets" head={["Tenant", "Target", "Requests", "p95"]}>
        {top.map((t) => (
          <tr>
            <td>{t.tenant}</td>
            <td>{t.target}</td>
            <td>{t.requests}</td>
            <td>{t.p95 ? `${ms(t.p95).toFixed(1)} ms` : "—"}</td>
          </tr>
        ))}
      </Table>
      {!caller.tenant && (
        <>
          <h2>Nodes</h2>
          <Table label="Nodes" head={["Node", "Version", "Address", "Tunnels", "In flight", "State", "Certificate until"]}>
            {(nodes.data ?? []).map((n) => (
              <tr>
                <td>{n.nodeId}</td>
                <td>{n.version}</td>
                <td>{n.address}</td>
                <td>{n.tunnels}</td>
                <td>{n.inFlight}</td>
                <td>{n.draining ? "draining" : "serving"}</td>
                <td>{n.certificateExpireTime ? when(n.certificateExpireTime) : "no TLS"}</td>
              </tr>
            ))}
          </Table>
        </>
      )}
    </>
  );
}
