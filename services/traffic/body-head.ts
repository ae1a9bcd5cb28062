import { redactBody } from "./redact.js";

export interface BodyHead {
  add(chunk: Uint8Array): void;
  /** What was kept, secrets redacted. */
  body(): Buffer;
  /** More came than was kept. */
  readonly truncated: boolean;
}

/**
 * Keeps the first `limit` bytes of a body, copied: a slice would keep the
 * whole chunk (and its parent buffer) alive. The rest is only noted.
 */
export function bodyHead(limit: number): BodyHead {
  const parts: Buffer[] = [];
  let kept = 0;
  let truncated = false;
  return {
    add(chunk: Uint8Array) {
      if (kept >= limit) {
        if (chunk.length > 0) truncated = true;
        return;
      }
      const take = Math.min(limit - kept, chunk.length);
      parts.push(Buffer.from(chunk.subarray(0, take)));
      kept += take;
      if (take < chunk.length) truncated = true;
    },
    body: () => redactBody(Buffer.concat(parts)),
    get truncated() {
      return truncated;
    },
  };
}
