import { useState } from "preact/hooks";
import { useCaller } from "../lib/caller.js";
import { ConfirmButton, ErrorNote, StateCell, Table, TenantPicker, useLoad, useMint, useTenant } from "../components/ui.js";
import { when } from "../lib/format.js";

export function KeysPage() {
  const { api, canWrite } = useCaller();
  const [tenant, pick, names] = useTenant();
  const keys = useLoad(async () => (tenant ? (await api.listKeys({ tenant })).keys : []), [tenant]);
  const [description, setDescription] = useState("");
  const { mint: minted, error, dialog } = useMint(keys.reload);
  return (
    <>
      <TenantPicker tenant={tenant} names={names} onChange={pick} />
      <ErrorNote error={error ?? keys.error} />
      {canWrite && tenant && (
        <form
          class="row"
          onSubmit={(e) => {
            e.preventDefault();
            void minted(api.createKey({ tenant, description })).then((ok) => ok && setDescription(""));
          }}
        >
          <label class="inline">
            Description
            <input value={description} onInput={(e) => setDescription(e.currentTarget.value)} placeholder="Hamburg office" />
          </label>
          <button type="submit" class="primary">
            Create key
          </button>
        </form>
      )}
      <Table label="Connector keys" head={["Key", "Description", "Created", "Expires", "State", ...(canWrite ? ["Actions"] : [])]}>
        {(keys.data ?? []).map((k) => (
          <tr>
            <td>
              <code>{k.keyId}</code>
            </td>
            <td>{k.description}</td>
            <td>{when(k.createTime)}</td>
            <td>{k.expireTime ? when(k.expireTime) : "never"}</td>
            <StateCell revoked={k.revokeTime !== undefined} replacedBy={k.replacedBy} />
            {canWrite && (
              <td class="actions">
                {!k.revokeTime && (
                  <>
                    <ConfirmButton
                      label="Rotate"
                      question={`Mint a successor of ${k.keyId}? The old key keeps working for 24 hours.`}
                      onConfirm={() => minted(api.rotateKey({ tenant, keyId: k.keyId }))}
                    />
                    <ConfirmButton
                      label="Revoke"
                      danger
                      question={`Revoke ${k.keyId}? Connectors using it are disconnected at once.`}
                      onConfirm={() => api.revokeKey({ tenant, keyId: k.keyId }).then(keys.reload)}
                    />
                  </>
                )}
              </td>
            )}
          </tr>
        ))}
      </Table>
      {dialog("connector key")}
    </>
  );
}
