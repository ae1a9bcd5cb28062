import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { adminClient, errorText } from "./lib/api.js";
import { type Caller, CallerContext, callerOf } from "./lib/caller.js";
import { AccessPage } from "./pages/access.js";
import { AuditPage } from "./pages/audit.js";
import { ConnectorsPage } from "./pages/connectors.js";
import { KeysPage } from "./pages/keys.js";
import { OverviewPage } from "./pages/overview.js";
import { SignIn } from "./pages/sign-in.js";
import { TenantsPage } from "./pages/tenants.js";
import { TokensPage } from "./pages/tokens.js";
import { TrafficPage } from "./pages/traffic.js";
import { session } from "./lib/session.js";

interface Page {
  path: string;
  title: string;
  render: () => preact.JSX.Element;
  /** Shown to this caller at all (tenant tokens have no tenant list, no tokens, no nodes). */
  shown(c: Caller): boolean;
}

const PAGES: Page[] = [
  { path: "overview", title: "Overview", render: () => <OverviewPage />, shown: () => true },
  { path: "tenants", title: "Tenants", render: () => <TenantsPage />, shown: (c) => c.tenant === undefined },
  { path: "keys", title: "Connector keys", render: () => <KeysPage />, shown: () => true },
  { path: "connectors", title: "Connectors", render: () => <ConnectorsPage />, shown: () => true },
  { path: "access", title: "Access", render: () => <AccessPage />, shown: () => true },
  { path: "traffic", title: "Live traffic", render: () => <TrafficPage />, shown: () => true },
  { path: "audit", title: "Audit log", render: () => <AuditPage />, shown: () => true },
  { path: "tokens", title: "Admin tokens", render: () => <TokensPage />, shown: (c) => c.tenant === undefined },
];

const route = () => location.hash.replace(/^#\/?/, "").split("?")[0] || "overview";

function App() {
  const [token, setToken] = useState(session.token());
  const [caller, setCaller] = useState<Caller>();
  const [notice, setNotice] = useState<string>();
  const [path, setPath] = useState(route());

  useEffect(() => {
    const onHash = () => setPath(route());
    addEventListener("hashchange", onHash);
    return () => removeEventListener("hashchange", onHash);
  }, []);

  useEffect(() => {
    if (!token) return;
    const signOut = (why: string) => {
      session.signOut();
      setCaller(undefined);
      setToken(undefined);
      setNotice(why);
    };
    const api = adminClient(token, (message) => signOut(`Signed out: ${message}`));
    api.getCaller({}).then(
      (r) => setCaller(callerOf(api, r.token?.tokenId ?? "", r.token?.role ?? "", r.nodeId)),
      (err: unknown) => signOut(errorText(err)),
    );
  }, [token]);

  if (!token) {
    return (
      <SignIn
        notice={notice}
        onSignIn={(t) => {
          session.signIn(t);
          setNotice(undefined);
          setToken(t);
        }}
      />
    );
  }
  if (!caller) return <p class="loading">Signing in…</p>;
  const pages = PAGES.filter((p) => p.shown(caller));
  const page = pages.find((p) => p.path === path) ?? pages[0]!;
  document.title = `${page.title} · Ferry`;
  return (
    <CallerContext.Provider value={caller}>
      <header class="top">
        <a class="brand" href="#/overview">
          Ferry
        </a>
        <nav aria-label="Pages">
          {pages.map((p) => (
            <a href={`#/${p.path}`} aria-current={p === page ? "page" : undefined}>
              {p.title}
            </a>
          ))}
        </nav>
        <div class="who">
          <span data-testid="role">{caller.role}</span> <span class="muted">({caller.tokenId})</span>
          <button
            type="button"
            onClick={() => {
              session.signOut();
              setCaller(undefined);
              setToken(undefined);
            }}
          >
            Sign out
          </button>
        </div>
      </header>
      <main id="main">
        <h1>{page.title}</h1>
        {page.render()}
      </main>
    </CallerContext.Provider>
  );
}

render(<App />, document.getElementById("app")!);
