import { useCaller } from "../lib/caller.js";
import { ConfirmButton, ErrorNote, Table, TenantPicker, useLoad, useTenant } from "../components/ui.js";
import { duration, when } from "../lib/format.js";

/** Refreshed every 2 seconds: a connector that comes online shows up without a reload. */
export function ConnectorsPage() {
  const { api, canWrite } = useCaller();
  const [tenant, pick, names] = useTenant();
  const list = useLoad(async () => (tenant ? (await api.listConnectors({ tenant })).connectors : []), [tenant], 2_000);
  const targets = useLoad(async () => (tenant ? (await api.listTargets({ tenant })).targets : []), [tenant], 2_000);
  return (
    <>
      <TenantPicker tenant={tenant} names={names} onChange={pick} />
      <ErrorNote error={list.error} />
      <Table label="Connectors" head={["Connector", "Host", "Version", "State", "Leaves at", "Nodes", "Tunnels", "In flight", "RTT", "Targets", ...(canWrite ? ["Actions"] : [])]}>
        {(list.data ?? []).map((c) => (
          <tr data-testid="connector-row">
            <td>{c.connectorId}</td>
            <td>{c.hostname}</td>
            <td>{c.version}</td>
            <td>{c.paused ? <span class="warn">paused</span> : <span class="good">online</span>}</td>
            <td>{c.leaveTime ? when(c.leaveTime) : "—"}</td>
            <td>{c.nodeIds.join(", ")}</td>
            <td>{c.tunnels}</td>
            <td>{c.inFlight}</td>
            <td>{duration(c.lastPingRtt)}</td>
            <td>{c.targets.join(", ")}</td>
            {canWrite && (
              <td class="actions">
                <ConfirmButton
                  label="Disconnect"
                  danger
                  question={`Close the tunnels of ${c.connectorId}? It reconnects by itself unless its key is revoked.`}
                  onConfirm={() => api.disconnectConnector({ tenant, connectorId: c.connectorId, reason: "from the console" }).then(list.reload)}
                />
              </td>
            )}
          </tr>
        ))}
      </Table>
      {list.data?.length === 0 && <p class="muted">No connector of {tenant} is online.</p>}
      <h2>Targets</h2>
      <Table label="Targets" head={["Target", "Connectors", "Tunnels", "Allowed"]}>
        {(targets.data ?? []).map((t) => (
          <tr>
            <td>{t.name}</td>
            <td>{t.connectors}</td>
            <td>{t.tunnels}</td>
            <td>{t.allowed ? "yes" : <span class="bad">no (tenant settings)</span>}</td>
          </tr>
        ))}
      </Table>
    </>
  );
}
