import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { FerryError } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import { type NodeRequest, type NodeResponse, readOnlyPath, respondHeadOnly, sendError } from "../http/http-error.js";

export const CONSOLE_PREFIX = "/console/";

/**
 * The console is a page of the admin API's origin: nothing it loads comes from elsewhere, nothing inline runs,
 * and no other site may frame it (the admin token is in its session).
 */
const CONSOLE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
  ".txt": "text/plain; charset=utf-8",
};
/** The bundle is a few hundred KB; a directory far larger than that is not the console. */
const MAX_TOTAL_BYTES = 5 * 1024 * 1024;

/** Where `npm run build` writes the console: beside the compiled relay (dist/console), or dist/ when run from source. */
export function defaultConsoleDir(): string {
  const candidates = ["../../console", "../../dist/console"].map((p) => fileURLToPath(new URL(p, import.meta.url)));
  return candidates.find((dir) => existsSync(join(dir, "index.html"))) ?? candidates[0]!;
}

interface ConsoleFile {
  body: Buffer;
  type: string;
  etag: string;
}

/**
 * GET /console/...: the built console's files, read once at start into memory
 * and looked up by name only, so no request path reaches the file system.
 */
export function consoleFiles(dir: string, log: Logger): (req: NodeRequest, res: NodeResponse) => void {
  const files = loadFiles(dir, log);
  return (req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0]!;
    if (path === "/console") {
      res.writeHead(308, { location: CONSOLE_PREFIX, "content-length": 0 });
      res.end();
      return;
    }
    if (!readOnlyPath(req, res, path)) return;
    if (!files) return sendError(res, new FerryError("not_found", "console_not_built", "the console is not built: run npm run build"));
    const name = path.slice(CONSOLE_PREFIX.length) || "index.html";
    const file = files.get(name);
    if (!file) return sendError(res, new FerryError("not_found", "not_found", `the console has no ${path.slice(0, 200)}`));
    const headers = {
      "content-type": file.type,
      "content-security-policy": CONSOLE_CSP,
      "x-content-type-options": "nosniff",
      "x-frame-options": "DENY",
      "referrer-policy": "no-referrer",
      // The names are not hashed: revalidate every time (a 304 costs one round trip).
      "cache-control": "no-cache",
      etag: file.etag,
    };
    if (req.headers["if-none-match"] === file.etag) return respondHeadOnly(res, 304, headers);
    if (req.method === "HEAD") return respondHeadOnly(res, 200, { ...headers, "content-length": file.body.length });
    res.writeHead(200, { ...headers, "content-length": file.body.length });
    res.end(file.body);
  };
}

function loadFiles(dir: string, log: Logger): Map<string, ConsoleFile> | undefined {
  if (!existsSync(join(dir, "index.html"))) {
    log.warn({ dir }, "the web console is not built (npm run build): /console/ answers 404");
    return undefined;
  }
  const files = new Map<string, ConsoleFile>();
  let total = 0;
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    const type = TYPES[extname(name)];
    if (!type || !statSync(full).isFile()) continue;
    const body = readFileSync(full);
    total += body.length;
    if (total > MAX_TOTAL_BYTES) {
      log.error({ dir }, "the console directory holds more than 5 MB: not serving it");
      return undefined;
    }
    files.set(name, { body, type, etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"` });
  }
  return files;
}
