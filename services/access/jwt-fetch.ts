import { isIP } from "node:net";
import { compileIpList } from "./ip-rules.js";

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
  if (u.hostname !== from.hostname && isInternal(u.hostname)) return "must not be a loopback, private or link-local address other than the issuer's";
  return undefined;
}

/**
 * Address ranges that are the relay's own host or network, or can stand for them: loopback, private, link-local,
 * shared (CGNAT), benchmarking, unspecified; in IPv6 also site-local, IPv4-compatible, IPv4-mapped and NAT64
 * (64:ff9b::a9fe:a9fe is 169.254.169.254 behind a NAT64 gateway).
 */
const INTERNAL_V4 = compileIpList(["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15"]);
// Apart from the IPv4 list: a BlockList checks IPv4 addresses against its IPv6 rules as IPv4-mapped ones.
const INTERNAL_V6 = compileIpList(["::/96", "::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "fc00::/7", "fe80::/10", "fec0::/10"]);

/** An IP address literal in those ranges, or a name that always means this host (localhost, *.localhost). */
function isInternal(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "").replace(/\.$/, "").toLowerCase();
  if (host === "localhost" || host.endsWith(".localhost")) return true;
  const family = isIP(host);
  return family === 4 ? INTERNAL_V4.has(host) : family === 6 && INTERNAL_V6.has(host);
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
