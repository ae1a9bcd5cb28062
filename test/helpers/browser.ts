import { accessSync, constants } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { delimiter, join } from "node:path";
import { build } from "esbuild";
import { type Browser, chromium } from "playwright-core";

/** Where Debian puts chromium; FERRY_CHROMIUM overrides, then PATH is searched. */
const CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser"];

/**
 * The chromium binary, or an error saying how to get one: a browser test
 * without a browser must fail, not pass by skipping.
 */
export function findChromium(env: NodeJS.ProcessEnv = process.env): string {
  const onPath = (env.PATH ?? "").split(delimiter).flatMap((dir) => (dir ? [join(dir, "chromium"), join(dir, "chromium-browser")] : []));
  const candidates = env.FERRY_CHROMIUM ? [env.FERRY_CHROMIUM] : [...CANDIDATES, ...onPath];
  for (const path of candidates) {
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // try the next one
    }
  }
  throw new Error(
    `chromium not found (looked at ${candidates.join(", ")}): the browser tests need it. ` +
      "Run scripts/ensure-test-deps.sh as root (npm test does), or apt-get install chromium, or set FERRY_CHROMIUM to a Chromium binary.",
  );
}

/**
 * Headless chromium through playwright-core; root needs --no-sandbox (chromium refuses to sandbox as root).
 * `args` adds command-line switches, e.g. --host-resolver-rules to give test host names an address.
 */
export function launchChromium(args: string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: findChromium(),
    headless: true,
    args: [...(process.getuid?.() === 0 ? ["--no-sandbox"] : []), ...args],
  });
}

/** One browser script from a TypeScript entry file, with its imports bundled in. */
export async function bundleScript(entry: string): Promise<string> {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    write: false,
    format: "iife",
    platform: "browser",
    target: "es2022",
    logLevel: "silent",
  });
  return result.outputFiles[0]!.text;
}

export interface PageServer {
  /** The page's origin, e.g. http://127.0.0.1:40123 (what CORS policies list). */
  origin: string;
  /** The page's URL. */
  url: string;
  close(): Promise<void>;
}

/**
 * Serves an empty page that loads `script`, on its own port: a different
 * origin from the relay, so the browser applies real CORS to every call.
 */
export async function servePage(script: string): Promise<PageServer> {
  const html = '<!doctype html><html><head><meta charset="utf-8"><title>ferry browser test</title><script src="/app.js"></script></head><body></body></html>';
  const server = createServer((req, res) => {
    if (req.url === "/") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(html);
    } else if (req.url === "/app.js") {
      res.writeHead(200, { "content-type": "text/javascript; charset=utf-8" }).end(script);
    } else {
      res.writeHead(404).end(); // the favicon, mostly
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    url: `${origin}/`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
