/**
 * The admin token lives in this tab's sessionStorage: gone when the tab
 * closes, never sent by the browser on its own (no cookie, so no CSRF), and
 * out of reach of other origins.
 */
const KEY = "ferry.adminToken";

export const session = {
  token: (): string | undefined => sessionStorage.getItem(KEY) ?? undefined,
  signIn(token: string): void {
    sessionStorage.setItem(KEY, token);
  },
  signOut(): void {
    sessionStorage.removeItem(KEY);
  },
};
