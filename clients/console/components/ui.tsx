import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { errorText } from "../lib/api.js";
import { useCaller } from "../lib/caller.js";

/** A call's result, its error, and a way to run it again; `everyMs` re-runs it while the page is open. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[], everyMs?: number) {
  const [state, setState] = useState<{ data?: T; error?: string }>({});
  const run = useCallback(() => {
    load().then(
      (data) => setState({ data }),
      (err: unknown) => setState((s) => ({ data: s.data, error: errorText(err) })),
    );
  }, deps);
  useEffect(() => {
    run();
    if (!everyMs) return;
    const timer = setInterval(run, everyMs);
    return () => clearInterval(timer);
  }, [run, everyMs]);
  return { ...state, reload: run };
}

export function ErrorNote({ error }: { error: string | undefined }) {
  return error ? (
    <p class="error" role="alert">
      {error}
    </p>
  ) : null;
}

/** A modal on the native <dialog>: focus stays inside, Escape closes it, the page behind is inert. */
export function Dialog({ title, onClose, children }: { title: string; onClose: () => void; children: ComponentChildren }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    ref.current?.showModal();
  }, []);
  return (
    <dialog ref={ref} aria-label={title} onClose={onClose} onCancel={onClose}>
      <h2>{title}</h2>
      {children}
    </dialog>
  );
}

/** A secret the relay returns once: shown here once, with a copy button, and gone when the dialog closes. */
export function SecretDialog({ secret, what, onClose }: { secret: string; what: string; onClose: () => void }) {
  const [copied, setCopied] = useState(false);
  return (
    <Dialog title={`New ${what}`} onClose={onClose}>
      <p>Copy it now: it is shown only this once (the relay keeps only its hash).</p>
      <code class="secret" data-testid="secret">
        {secret}
      </code>
      <div class="actions">
        <button
          type="button"
          onClick={() => {
            void navigator.clipboard?.writeText(secret).then(() => setCopied(true));
          }}
        >
          {copied ? "Copied" : "Copy"}
        </button>
        <button type="button" class="primary" onClick={onClose}>
          Done
        </button>
      </div>
    </Dialog>
  );
}

/**
 * A call that mints a secret (a key, a token): the secret goes to a dialog shown once, the list reloads, a refusal
 * becomes the page's error. `dialog(what)` renders the dialog while there is a secret to show.
 */
export function useMint(reload: () => void) {
  const [secret, setSecret] = useState<string>();
  const [error, setError] = useState<string>();
  /** Resolves true once the secret is shown, false when the relay refused (the error is shown instead). */
  const mint = (call: Promise<{ secret: string }>): Promise<boolean> =>
    call.then(
      (r) => {
        setSecret(r.secret);
        setError(undefined);
        reload();
        return true;
      },
      (err: unknown) => {
        setError(errorText(err));
        return false;
      },
    );
  const dialog = (what: string) => (secret ? <SecretDialog secret={secret} what={what} onClose={() => setSecret(undefined)} /> : null);
  return { mint, error, setError, dialog };
}

/** A key's or token's state cell: revoked, replaced, or valid. */
export function StateCell({ revoked, replacedBy }: { revoked: boolean; replacedBy?: string }) {
  return <td>{revoked ? <span class="bad">revoked</span> : replacedBy ? `replaced by ${replacedBy}` : "valid"}</td>;
}

/** A button that asks first; with `typed`, the operator must type that word (a tenant's name before deleting it). */
export function ConfirmButton(props: { label: string; question: string; typed?: string; danger?: boolean; onConfirm: () => Promise<unknown> }) {
  const [open, setOpen] = useState(false);
  const [text, setText] = useState("");
  const [error, setError] = useState<string>();
  const ready = props.typed === undefined || text === props.typed;
  return (
    <>
      <button type="button" class={props.danger ? "danger" : ""} onClick={() => setOpen(true)}>
        {props.label}
      </button>
      {open && (
        <Dialog title={props.label} onClose={() => setOpen(false)}>
          <p>{props.question}</p>
          {props.typed !== undefined && (
            <label>
              Type <strong>{props.typed}</strong> to confirm
              <input value={text} onInput={(e) => setText(e.currentTarget.value)} autoComplete="off" />
            </label>
          )}
          <ErrorNote error={error} />
          <div class="actions">
            <button type="button" onClick={() => setOpen(false)}>
              Cancel
            </button>
            <button
              type="button"
              class={props.danger ? "danger" : "primary"}
              disabled={!ready}
              onClick={() => {
                props.onConfirm().then(
                  () => setOpen(false),
                  (err: unknown) => setError(errorText(err)),
                );
              }}
            >
              {props.label}
            </button>
          </div>
        </Dialog>
      )}
    </>
  );
}

/** The tenant a page is about: a tenant token's own, else one picked from the list (kept in the URL). */
export function useTenant(): [string, (t: string) => void, string[]] {
  const caller = useCaller();
  const fromHash = new URLSearchParams(location.hash.split("?")[1] ?? "").get("tenant") ?? "";
  const [tenant, setTenant] = useState(caller.tenant ?? fromHash);
  const { data } = useLoad(async () => (caller.tenant ? [caller.tenant] : (await caller.api.listTenants({ pageSize: 1000 })).tenants.map((t) => t.name)), []);
  const names = data ?? [];
  const chosen = tenant || names[0] || "";
  const pick = (t: string) => {
    setTenant(t);
    const [path] = location.hash.split("?");
    history.replaceState(null, "", `${path}?tenant=${encodeURIComponent(t)}`);
  };
  return [chosen, pick, names];
}

export function TenantPicker({ tenant, names, onChange }: { tenant: string; names: string[]; onChange: (t: string) => void }) {
  if (names.length <= 1) return tenant ? <p class="muted">Tenant: {tenant}</p> : <p class="muted">No tenant yet.</p>;
  return (
    <label class="inline">
      Tenant
      <select value={tenant} onChange={(e) => onChange(e.currentTarget.value)}>
        {names.map((n) => (
          <option value={n}>{n}</option>
        ))}
      </select>
    </label>
  );
}

/** Tables scroll sideways on a phone instead of squeezing their columns. */
export function Table({ label, head, children }: { label: string; head: string[]; children: ComponentChildren }) {
  return (
    <div class="table-wrap">
      <table aria-label={label}>
        <thead>
          <tr>
            {head.map((h) => (
              <th scope="col">{h}</th>
            ))}
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
    </div>
  );
}
