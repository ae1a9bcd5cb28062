import { execFile, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_TOKEN, FerryProcess, ROOT, tempDir } from "../helpers/processes.js";

const execFileAsync = promisify(execFile);

// The npm package as a user gets it: `npm pack` of the built checkout, then `npm install -g` of that
// file into an empty prefix (so only package.json's dependencies, none of the devDependencies), and the
// installed `ferry` run from a directory outside the repository, with no node_modules above it.
const PKG = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  name: string;
  version: string;
  dependencies: Record<string, string>;
};
const INSTALL_TIMEOUT_MS = 240_000;

let work: string;
let tarball: string;
let entries: string[];
let prefix: string;
let ferry: string;
let installed: string;
const started: FerryProcess[] = [];

/** Kills a relay a failed test left running, even if afterAll does not get to it. */
process.once("exit", () => {
  for (const p of started) p.child.kill("SIGKILL");
});

/** This environment, less what would make npm or Node look at the checkout or a caller's npm run. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of Object.keys(env)) {
    if (/^npm_(package|lifecycle)_/i.test(name) || /^npm_config_(prefix|global_prefix|local_prefix|global|location)$/i.test(name)) delete env[name];
  }
  for (const name of ["NODE_OPTIONS", "NODE_PATH", "FERRY_CONNECTOR_KEY", "FERRY_ADMIN_TOKEN"]) delete env[name];
  return { ...env, ...extra };
}

async function npm(args: string[], cwd: string): Promise<string> {
  const { stdout } = await execFileAsync("npm", args, { cwd, env: cleanEnv(), maxBuffer: 64 * 1024 * 1024, timeout: INSTALL_TIMEOUT_MS });
  return stdout;
}

async function runInstalled(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(ferry, args, { cwd: work, env: cleanEnv(), timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : -1, stdout: e.stdout ?? "", stderr: e.stderr ?? String(err) };
  }
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

beforeAll(async () => {
  if (!existsSync(join(ROOT, "dist/clients/cli/main.js")) || !existsSync(join(ROOT, "dist/console/index.html"))) {
    throw new Error("dist/ is not built (no dist/clients/cli/main.js or dist/console/index.html): run `npm run build` before this test");
  }
  work = tempDir("ferry-npm-package-");
  // --ignore-scripts: prepare would rebuild dist/ under whatever else is running; the suite builds first.
  const packed = JSON.parse(await npm(["pack", "--ignore-scripts", "--json", "--pack-destination", work], ROOT)) as Array<{ filename: string }>;
  tarball = join(work, packed[0]!.filename);
  entries = (await execFileAsync("tar", ["-tzf", tarball], { maxBuffer: 16 * 1024 * 1024 })).stdout.split("\n").filter(Boolean);

  prefix = join(work, "prefix");
  // Run from the temporary directory, so no .npmrc or package.json of the checkout applies; the registry and
  // cache as configured, the cache used when it is warm.
  await npm(["install", "-g", tarball, "--prefix", prefix, "--no-audit", "--no-fund", "--prefer-offline"], work);
  ferry = join(prefix, "bin/ferry");
  installed = join(prefix, "lib/node_modules", PKG.name);
}, INSTALL_TIMEOUT_MS);

afterAll(async () => {
  for (const p of started) await p.stop("SIGKILL");
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("the npm package", () => {
  it("packs the built code, the console, the protocol and the docs, and nothing of the development tree", () => {
    const paths = entries.map((e) => e.replace(/^package\//, ""));
    for (const needed of ["package.json", "README.md", "LICENSE", "dist/clients/cli/main.js", "dist/console/index.html", "dist/console/app.js", "dist/services/relay/relay.js", "docs/security.md"]) {
      expect(paths, needed).toContain(needed);
    }
    expect(paths.some((p) => p.startsWith("proto/ferry/") && p.endsWith(".proto"))).toBe(true);
    const unwanted = paths.filter(
      (p) =>
        /^(test|bench|scripts|\.ci|node_modules|data|coverage|dist\/bin|services|core|clients|gen)\//.test(p) ||
        /\.(map|tsbuildinfo|test\.[cm]?[jt]s)$/.test(p) ||
        (p.endsWith(".ts") && !p.endsWith(".d.ts")),
    );
    expect(unwanted).toEqual([]);
  });

  it("installs with only its dependencies, and every module it imports is one of them", () => {
    const deps = new Set(Object.keys(PKG.dependencies));
    const modules = join(installed, "node_modules");
    // None of the devDependencies came along.
    for (const dev of ["typescript", "vitest", "esbuild", "tsx", "preact", "ws", "playwright-core", "oidc-provider"]) {
      expect(existsSync(join(modules, dev)), dev).toBe(false);
    }
    const missing: string[] = [];
    const seen = new Set<string>();
    for (const file of filesUnder(join(installed, "dist")).filter((f) => f.endsWith(".js") && !f.includes("/dist/console/"))) {
      const text = readFileSync(file, "utf8");
      const specifiers = [
        ...text.matchAll(/\b(?:import|export)\b[^;"'`]*?\bfrom\s*["']([^"'\n]+)["']/g),
        ...text.matchAll(/\bimport\s*\(?\s*["']([^"'\n]+)["']/g),
        ...text.matchAll(/createRequire\(import\.meta\.url\)\(\s*["']([^"'\n]+)["']/g),
      ].map((m) => m[1]!);
      for (const spec of specifiers) {
        if (spec.startsWith(".") || spec.startsWith("node:")) continue;
        const name = spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!;
        // tsx: only when the relay runs from its TypeScript sources (audit-scan-worker.ts), never in dist/.
        if (name === "tsx") continue;
        seen.add(name);
        if (!deps.has(name) || !existsSync(join(modules, name, "package.json"))) missing.push(`${relative(installed, file)}: ${spec}`);
      }
    }
    expect(missing).toEqual([]);
    // The scan found the imports (a pattern that matched nothing would pass anything).
    for (const dep of ["commander", "pino", "@bufbuild/protobuf", "@connectrpc/connect-node", "undici"]) expect(seen, dep).toContain(dep);
  });

  it("ferry --version prints package.json's version", async () => {
    const out = await runInstalled(["--version"]);
    expect(out.code).toBe(0);
    expect(out.stdout.trim()).toBe(PKG.version);
  });

  it("ferry --help lists the commands", async () => {
    const out = await runInstalled(["--help"]);
    expect(out.code).toBe(0);
    for (const command of ["relay", "connector", "admin", "doctor"]) expect(out.stdout).toMatch(new RegExp(`^\\s+${command}\\b`, "m"));
  });

  it("ferry relay starts, answers /healthz with its version, serves the packed console, and stops cleanly", async () => {
    const data = join(work, "data");
    const relay = new FerryProcess(
      spawn(ferry, ["relay", "--listen", "127.0.0.1:0", "--data", data], {
        cwd: work,
        env: cleanEnv({ FERRY_LOG_FORMAT: "json", FERRY_ADMIN_TOKEN: ADMIN_TOKEN }),
        stdio: ["ignore", "pipe", "pipe"],
      }),
    );
    started.push(relay);
    const url = String((await relay.waitFor((l) => l.msg === "relay listening", "relay listening")).url);

    const health = await fetch(`${url}/healthz`);
    expect(health.status).toBe(200);
    expect(((await health.json()) as { version?: string }).version).toBe(PKG.version);

    // The console the relay found is the installed package's dist/console.
    const page = await fetch(`${url}/console/`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toMatch(/^text\/html/);
    expect(await page.text()).toBe(readFileSync(join(installed, "dist/console/index.html"), "utf8"));
    const script = await fetch(`${url}/console/app.js`);
    expect(script.status).toBe(200);
    expect((await script.arrayBuffer()).byteLength).toBe(readFileSync(join(installed, "dist/console/app.js")).length);

    expect(await relay.stop()).toEqual({ code: 0, signal: null });
    expect(relay.lines.some((l) => l.msg === "relay stopped")).toBe(true);
  });
});
