import { isIP } from "node:net";

/**
 * Largest discovery document or JWKS the relay reads: real ones are a few KiB
 * (Entra ID's JWKS with its certificate chains is about 10 KiB), and a
 * provider that sends more must not make the relay buffer it.
 */
export const MAX_IDP_RESPONSE_BYTES = 512 * 1024;

/**
 * Why `url` may not be fetched for an identity provider's keys or discovery,
 * or undefined when it may: https, or http to a loopback address only (a test
 * provider, or one on the relay's own host), no credentials in it, no
 * fragment. The policy's validation gives the same answer at `access set`.
 */
export function idpUrlProblem(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return "is not a URL";
  }
  if (u.username || u.password) return "must not carry credentials";
  if (u.hash) return "must not have a fragment";
  if (u.protocol === "https:") return undefined;
  if (u.protocol === "http:" && isLoopback(u.hostname)) return undefined;
  return "must be https (http only on a loopback address)";
}

/**
 * Why an endpoint that `issuer`'s discovery document names may not be used, or undefined: as idpUrlProblem, and
 * no weaker than the issuer. Whoever sets a tenant's policy may run the provider, and the relay POSTs the client
 * secret to its token endpoint on any anonymous callback: an https issuer's endpoints must be https, and an
 * address literal on the relay's own host or network (loopback, private, link-local) only on the issuer's own host.
 */
export function idpEndpointProblem(url: string, issuer: string): string | undefined {
  const problem = idpUrlProblem(url);
  if (problem) return problem;
  const u = new URL(url);
  const from = new URL(issuer);
  if (u.protocol === "http:" && from.protocol !== "http:") return "must be https, as the issuer is";
  if (u.hostname !== from.hostname && (isLoopback(u.hostname) || isInternal(u.hostname))) return "must not be a loopback, private or link-local address other than the issuer's";
  return undefined;
}

/** An IP address literal of a private, link-local, shared or unspecified range (IPv4 or IPv6). */
function isInternal(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (isIP(host) === 4) {
    const [a, b] = host.split(".").map(Number) as [number, number];
    return a === 0 || a === 10 || a === 127 || (a === 100 && b >= 64 && b < 128) || (a === 169 && b === 254) || (a === 172 && b >= 16 && b < 32) || (a === 192 && b === 168);
  }
  if (isIP(host) !== 6) return false;
  // An IPv4-mapped address, as the URL parser writes it ([::ffff:10.0.0.5] becomes [::ffff:a00:5]).
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host);
  if (mapped) {
    const [hi, lo] = [parseInt(mapped[1]!, 16), parseInt(mapped[2]!, 16)];
    return isInternal(`${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`);
  }
  return host === "::" || host === "::1" || /^f[cd]/.test(host) || /^fe[89ab]/.test(host);
}

function isLoopback(hostname: string): boolean {
  if (hostname === "localhost" || hostname === "[::1]") return true;
  return isIP(hostname) === 4 && hostname.startsWith("127.");
}

/**
 * GETs a JSON document from an identity provider: no redirects (a provider's
 * endpoints are where its metadata says), 200 only, at most
 * MAX_IDP_RESPONSE_BYTES, within `signal`. Throws an Error whose message names
 * the URL and what went wrong (for the operator's log; never shown to a client).
 */
export async function fetchIdpJson(url: string, signal: AbortSignal): Promise<unknown> {
  return (await requestIdpJson(url, signal, { method: "GET", okStatuses: [200] })).json;
}

/**
 * POSTs a form to an identity provider (its token endpoint) and reads the
 * JSON answer under the same rules as fetchIdpJson; a 400 or 401 is read
 * too (OAuth errors come as JSON with them) and returned with its status.
 */
export async function postIdpForm(url: string, form: URLSearchParams, headers: Record<string, string>, signal: AbortSignal): Promise<{ status: number; json: unknown }> {
  return requestIdpJson(url, signal, { method: "POST", body: form.toString(), headers: { "content-type": "application/x-www-form-urlencoded", ...headers }, okStatuses: [200, 400, 401] });
}

interface IdpRequest {
  method: "GET" | "POST";
  body?: string;
  headers?: Record<string, string>;
  okStatuses: number[];
}

async function requestIdpJson(url: string, signal: AbortSignal, init: IdpRequest): Promise<{ status: number; json: unknown }> {
  const problem = idpUrlProblem(url);
  if (problem) throw new Error(`${url} ${problem}`);
  let answer: { status: number; text: string };
  try {
    answer = await readCapped(url, signal, init);
  } catch (err) {
    if (err instanceof IdpAnswerError) throw err;
    throw new Error(`${url}: ${signal.aborted ? "no answer in time" : describe(err)}`);
  }
  try {
    return { status: answer.status, json: JSON.parse(answer.text) as unknown };
  } catch {
    throw new Error(`${url} did not send JSON`);
  }
}

/** The provider answered, but not with something usable (as opposed to a network failure). */
class IdpAnswerError extends Error {}

async function readCapped(url: string, signal: AbortSignal, init: IdpRequest): Promise<{ status: number; text: string }> {
  const res = await fetch(url, { method: init.method, redirect: "manual", signal, headers: { accept: "application/json", ...init.headers }, ...(init.body !== undefined ? { body: init.body } : {}) });
  const reader = res.body?.getReader();
  try {
    if (!init.okStatuses.includes(res.status)) throw new IdpAnswerError(`${url} answered ${res.status}, not ${init.okStatuses.join(" or ")}`);
    const declared = Number(res.headers.get("content-length") ?? 0);
    if (declared > MAX_IDP_RESPONSE_BYTES) throw new IdpAnswerError(`${url} sent ${declared} bytes, more than ${MAX_IDP_RESPONSE_BYTES}`);
    const chunks: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const next = await reader?.read();
      if (!next || next.done) break;
      total += next.value.byteLength;
      if (total > MAX_IDP_RESPONSE_BYTES) throw new IdpAnswerError(`${url} sent more than ${MAX_IDP_RESPONSE_BYTES} bytes`);
      chunks.push(next.value);
    }
    return { status: res.status, text: Buffer.concat(chunks).toString("utf8") };
  } finally {
    // A body left unread (an error status, too large) would keep its connection busy.
    reader?.cancel().catch(() => {});
  }
}

function describe(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err as Error).message ?? String(err);
}
