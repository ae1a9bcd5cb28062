import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
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
export const CONSOLE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/** Only files of these kinds are served: anything else in the directory (notes, editor files) is not the console. */
const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json",
  ".json": "application/json",
  ".webmanifest": "application/manifest+json",
  ".txt": "text/plain; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".gif": "image/gif",
  ".webp": "image/webp",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2",
  ".woff": "font/woff",
};
/** The bundle is a few hundred KB; a directory far larger than that is not the console. */
const MAX_TOTAL_BYTES = 5 * 1024 * 1024;
const MAX_FILES = 1000;
/** Subdirectories (assets/, fonts/) are read this deep; a link loop or a misplaced tree stops here. */
const MAX_DEPTH = 4;

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
    if (!readOnlyPath(req, res, path.slice(0, 200))) return;
    if (path === "/console") {
      res.writeHead(308, { location: CONSOLE_PREFIX, "content-length": 0 });
      res.end();
      return;
    }
    if (files instanceof FerryError) return sendError(res, files);
    // Names as the directory has them: %2e%2e, ../ or // are simply not among them.
    const name = path.slice(CONSOLE_PREFIX.length) || "index.html";
    const file = files.get(name);
    if (!file) return sendError(res, new FerryError("not_found", "not_found", `the console has no ${path.slice(0, 200)}`));
    const headers = {
      "content-type": file.type,
      "content-security-policy": CONSOLE_CSP,
      "x-content-type-options": "nosniff",
      "x-frame-options": "DENY",
      "referrer-policy": "no-referrer",
      // The build's names carry no content hash: revalidate every time (a 304 costs one round trip).
      "cache-control": "no-cache",
      etag: file.etag,
    };
    if (matchesEtag(req.headers["if-none-match"], file.etag)) return respondHeadOnly(res, 304, headers);
    if (req.method === "HEAD") return respondHeadOnly(res, 200, { ...headers, "content-length": file.body.length });
    res.writeHead(200, { ...headers, "content-length": file.body.length });
    res.end(file.body);
  };
}

/** If-None-Match as RFC 9110 compares it: a list, weak validators equal to strong ones, `*`. */
function matchesEtag(header: string | string[] | undefined, etag: string): boolean {
  if (typeof header !== "string") return false;
  return header.split(",").some((tag) => {
    const t = tag.trim();
    return t === "*" || t === etag || t === `W/${etag}`;
  });
}

/** The directory's files by relative name ("app.js", "assets/logo.svg"), or the error /console/ answers with. */
function loadFiles(dir: string, log: Logger): Map<string, ConsoleFile> | FerryError {
  if (!existsSync(join(dir, "index.html"))) {
    log.warn({ dir }, "the web console is not built (npm run build): /console/ answers 404");
    return new FerryError("not_found", "console_not_built", "the console is not built: run npm run build");
  }
  const files = new Map<string, ConsoleFile>();
  let total = 0;
  const walk = (sub: string, depth: number): string | undefined => {
    for (const entry of readdirSync(join(dir, sub), { withFileTypes: true })) {
      const name = sub ? `${sub}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        const tooMuch = depth < MAX_DEPTH ? walk(name, depth + 1) : undefined;
        if (tooMuch) return tooMuch;
        continue;
      }
      const type = TYPES[extname(entry.name).toLowerCase()];
      // Regular files only: a link could point anywhere on the machine.
      if (!type || !entry.isFile()) continue;
      const body = readFileSync(join(dir, name));
      total += body.length;
      if (total > MAX_TOTAL_BYTES) return `more than ${MAX_TOTAL_BYTES / 1024 / 1024} MB`;
      if (files.size >= MAX_FILES) return `more than ${MAX_FILES} files`;
      files.set(name, { body, type, etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"` });
    }
    return undefined;
  };
  const tooMuch = walk("", 0);
  if (tooMuch) {
    log.error({ dir }, `the console directory holds ${tooMuch}: not serving it (is consoleDir the built console?)`);
    return new FerryError("not_found", "console_unusable", "the console's directory is not a built console: see the relay's log");
  }
  log.debug({ dir, files: files.size, bytes: total }, "web console loaded");
  return files;
}
