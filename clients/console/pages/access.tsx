import { fromJsonString, toJsonString } from "@bufbuild/protobuf";
import { useEffect, useState } from "preact/hooks";
import { AccessPolicySchema } from "../../../gen/ferry/access/v1/access_policy_pb.js";
import { errorText } from "../lib/api.js";
import { useCaller } from "../lib/caller.js";
import { ConfirmButton, ErrorNote, StateCell, Table, TenantPicker, useLoad, useMint, useTenant } from "../components/ui.js";
import { when } from "../lib/format.js";

/** The tenant's client access policy (proto JSON, as `ferry admin access get --json` prints it) and its client keys. */
export function AccessPage() {
  const { api, canWrite } = useCaller();
  const [tenant, pick, names] = useTenant();
  const policy = useLoad(async () => (tenant ? await api.getAccessPolicy({ tenant }) : undefined), [tenant]);
  const keys = useLoad(async () => (tenant ? (await api.listClientKeys({ tenant })).keys : []), [tenant]);
  const [text, setText] = useState("");
  const [message, setMessage] = useState<string>();
  const { mint, error, setError, dialog } = useMint(() => keys.reload());
  const [targets, setTargets] = useState("");
  useEffect(() => {
    if (policy.data?.policy) setText(toJsonString(AccessPolicySchema, policy.data.policy, { prettySpaces: 2 }));
  }, [policy.data]);
  const empty = (policy.data?.policy?.rules.length ?? 0) === 0;
  const logins = (policy.data?.policy?.rules ?? []).filter((r) => r.login);
  return (
    <>
      <TenantPicker tenant={tenant} names={names} onChange={pick} />
      <ErrorNote error={error ?? policy.error ?? keys.error} />
      <h2>Policy</h2>
      <p class="muted">
        {empty ? "No rules: every target of this tenant is public." : `Set ${when(policy.data?.updateTime)}.`} Rules as in docs/access.md, in proto JSON.
      </p>
      <label>
        Policy (JSON)
        <textarea class="code" rows={12} value={text} readOnly={!canWrite} onInput={(e) => setText(e.currentTarget.value)} />
      </label>
      {canWrite && (
        <button
          type="button"
          class="primary"
          onClick={() => {
            let parsed;
            try {
              parsed = fromJsonString(AccessPolicySchema, text || "{}");
            } catch (err) {
              return setError(`Not a policy: ${(err as Error).message}`);
            }
            api.setAccessPolicy({ tenant, policy: parsed }).then(
              () => {
                setError(undefined);
                setMessage("Saved: in force on every node within a second.");
                policy.reload();
              },
              (err: unknown) => setError(errorText(err)),
            );
          }}
        >
          Save policy
        </button>
      )}
      {message && <p class="good">{message}</p>}
      {logins.length > 0 && (
        <>
          <h2>Sign-in</h2>
          <p class="muted">People sign in with a browser under these rules. Ending the sessions of a rule signs everyone out on every node: they sign in again at their next request.</p>
          <Table label="Sign-in rules" head={["Rule", "Targets", "Provider", "Client", "Sessions ended", ...(canWrite ? ["Actions"] : [])]}>
            {logins.map((r) => (
              <tr data-testid="login-row">
                <td>{r.name}</td>
                <td>{r.targets.join(", ")}</td>
                <td>{r.login!.issuer}</td>
                <td>
                  <code>{r.login!.clientId}</code>
                </td>
                <td>{r.login!.sessionsNotBefore ? when(r.login!.sessionsNotBefore) : "never"}</td>
                {canWrite && (
                  <td class="actions">
                    <ConfirmButton
                      label="End sessions"
                      danger
                      question={`End every session of rule ${r.name}? Everyone it signed in signs in again.`}
                      onConfirm={() => api.endLoginSessions({ tenant, rule: r.name }).then(policy.reload)}
                    />
                  </td>
                )}
              </tr>
            ))}
          </Table>
        </>
      )}
      <h2>Client keys</h2>
      {canWrite && tenant && (
        <form
          class="row"
          onSubmit={(e) => {
            e.preventDefault();
            const list = targets.split(",").map((s) => s.trim()).filter(Boolean);
            void mint(api.createClientKey({ tenant, targets: list })).then((ok) => ok && setTargets(""));
          }}
        >
          <label class="inline">
            Targets (empty: all)
            <input value={targets} onInput={(e) => setTargets(e.currentTarget.value)} placeholder="crm, erp" />
          </label>
          <button type="submit" class="primary">
            Create client key
          </button>
        </form>
      )}
      <Table label="Client keys" head={["Key", "Description", "Targets", "Created", "Expires", "State", ...(canWrite ? ["Actions"] : [])]}>
        {(keys.data ?? []).map((k) => (
          <tr>
            <td>
              <code>{k.keyId}</code>
            </td>
            <td>{k.description}</td>
            <td>{k.targets.join(", ") || "all"}</td>
            <td>{when(k.createTime)}</td>
            <td>{k.expireTime ? when(k.expireTime) : "never"}</td>
            <StateCell revoked={k.revokeTime !== undefined} />
            {canWrite && (
              <td class="actions">
                {!k.revokeTime && (
                  <ConfirmButton
                    label="Revoke"
                    danger
                    question={`Revoke client key ${k.keyId}? It is refused everywhere within a second.`}
                    onConfirm={() => api.revokeClientKey({ tenant, keyId: k.keyId }).then(keys.reload)}
                  />
                )}
              </td>
            )}
          </tr>
        ))}
      </Table>
      {dialog("client key")}
    </>
  );
}
