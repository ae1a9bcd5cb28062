import { create } from "@bufbuild/protobuf";
import { FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import { useState } from "preact/hooks";
import { type Tenant, TenantSchema } from "../../../gen/ferry/admin/v1/admin_service_pb.js";
import { errorText } from "../lib/api.js";
import { useCaller } from "../lib/caller.js";
import { ConfirmButton, Dialog, ErrorNote, Table, useLoad } from "../components/ui.js";
import { when } from "../lib/format.js";

export function TenantsPage() {
  const { api, canWrite } = useCaller();
  const list = useLoad(async () => (await api.listTenants({ pageSize: 1000 })).tenants, []);
  const [name, setName] = useState("");
  const [error, setError] = useState<string>();
  const [editing, setEditing] = useState<Tenant>();
  const act = (p: Promise<unknown>) =>
    p.then(
      () => {
        setError(undefined);
        list.reload();
      },
      (err: unknown) => setError(errorText(err)),
    );
  const setDisabled = (t: Tenant, disabled: boolean) =>
    act(api.updateTenant({ tenant: create(TenantSchema, { name: t.name, disabled }), updateMask: create(FieldMaskSchema, { paths: ["disabled"] }) }));

  return (
    <>
      <ErrorNote error={error ?? list.error} />
      {canWrite && (
        <form
          class="row"
          onSubmit={(e) => {
            e.preventDefault();
            void act(api.createTenant({ name: name.trim() })).then(() => setName(""));
          }}
        >
          <label class="inline">
            Name
            <input value={name} onInput={(e) => setName(e.currentTarget.value)} placeholder="acme" pattern="[a-z0-9-]{1,63}" required />
          </label>
          <button type="submit" class="primary">
            Create tenant
          </button>
        </form>
      )}
      <Table label="Tenants" head={["Name", "Display name", "State", "Created", ...(canWrite ? ["Actions"] : [])]}>
        {(list.data ?? []).map((t) => (
          <tr data-testid="tenant-row">
            <td>
              <a href={`#/connectors?tenant=${t.name}`}>{t.name}</a>
            </td>
            <td>{t.displayName}</td>
            <td>{t.disabled ? <span class="bad">disabled</span> : "enabled"}</td>
            <td>{when(t.createTime)}</td>
            {canWrite && (
              <td class="actions">
                <button type="button" onClick={() => setEditing(t)}>
                  Settings
                </button>
                <button type="button" onClick={() => void setDisabled(t, !t.disabled)}>
                  {t.disabled ? "Enable" : "Disable"}
                </button>
                <ConfirmButton
                  label="Delete"
                  danger
                  typed={t.name}
                  question={`Delete tenant ${t.name} with its keys? Its connectors are disconnected.`}
                  onConfirm={() => api.deleteTenant({ name: t.name }).then(list.reload)}
                />
              </td>
            )}
          </tr>
        ))}
      </Table>
      {editing && <TenantSettings tenant={editing} onClose={() => setEditing(undefined)} onSaved={list.reload} />}
    </>
  );
}

function TenantSettings({ tenant, onClose, onSaved }: { tenant: Tenant; onClose: () => void; onSaved: () => void }) {
  const { api } = useCaller();
  const [displayName, setDisplayName] = useState(tenant.displayName);
  const [description, setDescription] = useState(tenant.description);
  const [allowed, setAllowed] = useState(tenant.allowedTargets.join(", "));
  const [maxExchanges, setMaxExchanges] = useState(String(tenant.maxConcurrentExchanges || ""));
  const [error, setError] = useState<string>();
  return (
    <Dialog title={`Settings of ${tenant.name}`} onClose={onClose}>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          const next = create(TenantSchema, {
            name: tenant.name,
            displayName,
            description,
            allowedTargets: allowed.split(",").map((s) => s.trim()).filter(Boolean),
            maxConcurrentExchanges: Number(maxExchanges) || 0,
          });
          const paths = ["display_name", "description", "allowed_targets", "max_concurrent_exchanges"];
          api.updateTenant({ tenant: next, updateMask: create(FieldMaskSchema, { paths }) }).then(
            () => {
              onSaved();
              onClose();
            },
            (err: unknown) => setError(errorText(err)),
          );
        }}
      >
        <label>
          Display name
          <input value={displayName} onInput={(e) => setDisplayName(e.currentTarget.value)} />
        </label>
        <label>
          Description
          <textarea value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
        </label>
        <label>
          Allowed targets (comma-separated; empty: every target)
          <input value={allowed} onInput={(e) => setAllowed(e.currentTarget.value)} />
        </label>
        <label>
          Exchanges at once per node (empty: the relay's default)
          <input value={maxExchanges} inputMode="numeric" onInput={(e) => setMaxExchanges(e.currentTarget.value)} />
        </label>
        <ErrorNote error={error} />
        <div class="actions">
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" class="primary">
            Save
          </button>
        </div>
      </form>
    </Dialog>
  );
}
