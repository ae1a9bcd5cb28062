import { useState } from "preact/hooks";

export function SignIn({ notice, onSignIn }: { notice: string | undefined; onSignIn: (token: string) => void }) {
  const [token, setToken] = useState("");
  return (
    <main class="sign-in">
      <h1>Ferry</h1>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (token.trim()) onSignIn(token.trim());
        }}
      >
        <label>
          Admin token
          <input type="password" name="token" value={token} onInput={(e) => setToken(e.currentTarget.value)} autoComplete="off" required />
        </label>
        <p class="muted">Kept in this tab only (sessionStorage) and sent as a bearer header to this relay's admin API.</p>
        {notice && (
          <p class="error" role="alert">
            {notice}
          </p>
        )}
        <button type="submit" class="primary">
          Sign in
        </button>
      </form>
    </main>
  );
}
