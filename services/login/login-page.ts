import type { NodeResponse } from "../http/http-error.js";

/**
 * The relay's own pages on an app's sign-in path (refused, expired, signed
 * out): for a person, so HTML, but inert: no script, no frames, nothing
 * fetched, every text escaped.
 */
/** Where the page leads: a link, or with `post` a button that POSTs to it (the page's one form). */
export interface PageLink {
  href: string;
  text: string;
  post?: true;
}

export function sendPage(res: NodeResponse, status: number, title: string, message: string, link?: PageLink, headers: Record<string, string | string[]> = {}): void {
  const body =
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">` +
    `<title>${escapeHtml(title)}</title><style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#1f2933}` +
    `h1{font-size:1.4rem}a{color:#0b63ce}</style></head><body><h1>${escapeHtml(title)}</h1><p id="message">${escapeHtml(message)}</p>` +
    (link?.post
      ? `<form method="post" action="${escapeHtml(link.href)}"><button id="next" type="submit">${escapeHtml(link.text)}</button></form>`
      : link
        ? `<p><a id="next" href="${escapeHtml(link.href)}">${escapeHtml(link.text)}</a></p>`
        : "") +
    `</body></html>`;
  res.writeHead(status, {
    ...headers,
    "content-type": "text/html; charset=utf-8",
    "content-length": Buffer.byteLength(body),
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    // A sign-out form's answer redirects to the provider, which form-action would police too: then none.
    "content-security-policy": `default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'${link?.post ? "" : "; form-action 'none'"}`,
    "referrer-policy": "no-referrer",
  });
  res.end(body);
}

/** A redirect the browser follows at once; no-store, so a cached one never replays a sign-in. */
export function sendRedirect(res: NodeResponse, location: string, headers: Record<string, string | string[]> = {}): void {
  res.writeHead(302, { ...headers, location, "cache-control": "no-store", "content-length": 0, "referrer-policy": "no-referrer" });
  res.end();
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
