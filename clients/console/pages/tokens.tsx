import { useState } from "preact/hooks";
import { useCaller } from "../lib/caller.js";
import { ConfirmButton, ErrorNote, StateCell, Table, useLoad, useMint } from "../components/ui.js";
import { when } from "../lib/format.js";

export function TokensPage() {
  const { api, isAdmin } = useCaller();
  const tokens = useLoad(async () => (await api.listTokens({})).tokens, []);
  const [role, setRole] = useState("viewer");
  const [description, setDescription] = useState("");
  const { mint, error, dialog } = useMint(tokens.reload);
  return (
    <>
      <ErrorNote error={error ?? tokens.error} />
      {isAdmin && (
        <form
          class="row"
          onSubmit={(e) => {
            e.preventDefault();
            void mint(api.createToken({ role, description })).then((ok) => ok && setDescription(""));
          }}
        >
          <label class="inline">
            Role
            <input value={role} onInput={(e) => setRole(e.currentTarget.value)} list="roles" required />
            <datalist id="roles">
              <option value="admin" />
              <option value="viewer" />
              <option value="tenant:" />
            </datalist>
          </label>
          <label class="inline">
            Description
            <input value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
          </label>
          <button type="submit" class="primary">
            Create token
          </button>
        </form>
      )}
      <Table label="Admin tokens" head={["Token", "Role", "Description", "Created", "State", ...(isAdmin ? ["Actions"] : [])]}>
        {(tokens.data ?? []).map((t) => (
          <tr>
            <td>
              <code>{t.tokenId}</code>
            </td>
            <td>{t.role}</td>
            <td>{t.description}</td>
            <td>{when(t.createTime)}</td>
            <StateCell revoked={t.revokeTime !== undefined} />
            {isAdmin && (
              <td class="actions">
                {!t.revokeTime && (
                  <ConfirmButton
                    label="Revoke"
                    danger
                    question={`Revoke token ${t.tokenId}? It stops working at once.`}
                    onConfirm={() => api.revokeToken({ tokenId: t.tokenId }).then(tokens.reload)}
                  />
                )}
              </td>
            )}
          </tr>
        ))}
      </Table>
      {dialog("admin token")}
    </>
  );
}
