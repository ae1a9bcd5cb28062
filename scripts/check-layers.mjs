#!/usr/bin/env node
// Checks Ferry's floor plan (README "Layout", docs/architecture.md):
// - core/ (what both ends run) imports only gen/ and packages;
// - services/ (the relay) never imports clients/; clients/ never imports services/, except clients/cli/, the
//   `ferry` command, which is the one place that sees both ends;
// - no import cycle between files, nor between folders (type-only imports count: they tie files together for a
//   reader as much as any other).
//
//   node scripts/check-layers.mjs [--root DIR]
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const rootArg = process.argv.indexOf("--root");
const root = rootArg > 0 ? resolve(process.argv[rootArg + 1]) : resolve(here, "..");
const LAYERED = ["core", "services", "clients"];

/** Every .ts and .tsx file below the layered folders, as root-relative paths with "/". */
function sources() {
  const out = [];
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if ((name.endsWith(".ts") || name.endsWith(".tsx")) && !name.endsWith(".d.ts")) out.push(relative(root, path).split(sep).join("/"));
    }
  };
  for (const top of LAYERED) {
    try {
      walk(join(root, top));
    } catch (err) {
      if (err.code !== "ENOENT") throw err;
    }
  }
  return out.sort();
}

// Static imports and re-exports (`import x from`, `import type`, `export * from`, side-effect `import "..."`) and
// dynamic `import("...")`; comments are stripped first so an example in one is not taken for an import.
const IMPORT = /(?:^|[\s;])(?:import|export)\s[^"'`;]*?from\s*["']([^"']+)["']|(?:^|[\s;])import\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

function importsOf(file) {
  const text = readFileSync(join(root, file), "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`])\/\/.*$/gm, "$1");
  const found = [];
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[1] ?? m[2] ?? m[3];
    if (!spec.startsWith(".")) continue; // a package
    const target = relative(root, resolve(root, dirname(file), spec)).split(sep).join("/").replace(/\.js$/, ".ts");
    // The console's components are .tsx; their imports say .js like every other.
    found.push(target.endsWith(".ts") && !existsSync(join(root, target)) && existsSync(join(root, `${target}x`)) ? `${target}x` : target);
  }
  return found;
}

const top = (file) => file.split("/")[0];
const folder = (file) => file.slice(0, file.lastIndexOf("/"));
const isCli = (file) => file.startsWith("clients/cli/");
const isConsole = (file) => file.startsWith("clients/console/");

/** Why an import from `from` to `to` breaks the plan, or undefined. */
function layerProblem(from, to) {
  if (top(from) === "core" && top(to) !== "core" && top(to) !== "gen") return "core/ imports only gen/ and packages";
  if (top(from) === "services" && top(to) === "clients") return "the relay (services/) never imports clients/";
  // A browser bundle: the generated client and its own files, nothing of Node's ends.
  if (isConsole(from) && !isConsole(to) && top(to) !== "gen") return "the console (clients/console/) imports only gen/ and packages";
  if (top(from) === "clients" && top(to) === "services" && !isCli(from)) return "only clients/cli/ sees both ends; the rest of clients/ never imports services/";
  if (!["core", "services", "clients", "gen"].includes(top(to))) return `imports ${top(to)}/, outside the code`;
  return undefined;
}

/** Strongly connected components with more than one member (or a self loop): the cycles. */
function cycles(graph) {
  let index = 0;
  const stack = [];
  const onStack = new Set();
  const idx = new Map();
  const low = new Map();
  const found = [];
  const visit = (v) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const scc = [];
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? new Set()).has(v)) found.push(scc.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return found;
}

const problems = [];
const files = sources();
const fileGraph = new Map();
const folderGraph = new Map();
for (const file of files) {
  fileGraph.set(file, new Set());
  for (const target of importsOf(file)) {
    const why = layerProblem(file, target);
    if (why) problems.push(`${file} imports ${target}: ${why}`);
    if (top(target) === "gen") continue;
    fileGraph.get(file).add(target);
    const [a, b] = [folder(file), folder(target)];
    if (a !== b) {
      if (!folderGraph.has(a)) folderGraph.set(a, new Set());
      folderGraph.get(a).add(b);
    }
  }
}
for (const scc of cycles(fileGraph)) problems.push(`import cycle between files: ${scc.join(" <-> ")}`);
for (const scc of cycles(folderGraph)) {
  // Name one import per edge of the loop, so the fix is easy to find.
  const edges = [];
  for (const file of files) {
    for (const target of fileGraph.get(file)) {
      if (folder(file) !== folder(target) && scc.includes(folder(file)) && scc.includes(folder(target))) {
        edges.push(`${file} -> ${target}`);
      }
    }
  }
  problems.push(`import cycle between folders ${scc.join(" <-> ")}: ${edges.join("; ")}`);
}

if (problems.length > 0) {
  process.stderr.write(`check-layers: ${problems.length} problem(s)\n${problems.map((p) => `  ${p}`).join("\n")}\n`);
  process.exit(1);
}
process.stdout.write(`check-layers: ${files.length} files, layers and imports as planned\n`);
