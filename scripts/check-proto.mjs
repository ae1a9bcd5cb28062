#!/usr/bin/env node
// Checks that proto/ is lint-clean, that gen/ is exactly what `buf generate`
// makes from it (CI fails on drift), and that proto/ has no breaking change
// against the last commit.
//
//   node scripts/check-proto.mjs [--root DIR]
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const bin = resolve(here, "../node_modules/.bin");
const rootArg = process.argv.indexOf("--root");
const root = rootArg > 0 ? resolve(process.argv[rootArg + 1]) : resolve(here, "..");
const env = { ...process.env, PATH: `${bin}:${process.env.PATH}` };
const problems = [];

function buf(args) {
  return spawnSync(join(bin, "buf"), args, { cwd: root, env, encoding: "utf8" });
}

// 1. Lint.
const lint = buf(["lint"]);
if (lint.status !== 0) problems.push(`buf lint failed:\n${lint.stdout}${lint.stderr}`);

// 2. Drift: generate into a scratch directory and compare file by file.
const scratch = mkdtempSync(join(tmpdir(), "ferry-gen-"));
try {
  const gen = buf(["generate", "--output", scratch]);
  if (gen.status !== 0) {
    problems.push(`buf generate failed:\n${gen.stderr}`);
  } else {
    const fresh = listFiles(join(scratch, "gen"));
    const committed = listFiles(join(root, "gen"));
    for (const file of new Set([...fresh, ...committed])) {
      const a = join(scratch, "gen", file);
      const b = join(root, "gen", file);
      if (!existsSync(b)) problems.push(`gen/${file} is missing: run "npm run generate" and commit gen/`);
      else if (!existsSync(a)) problems.push(`gen/${file} is stale (no proto makes it): run "npm run generate"`);
      else if (!readFileSync(a).equals(readFileSync(b))) problems.push(`gen/${file} is out of date with proto/: run "npm run generate"`);
    }
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

// 3. Breaking changes against the committed tree (skipped outside git or before the first commit).
if (hasCommittedProto()) {
  const breaking = buf(["breaking", "--against", ".git#ref=HEAD"]);
  if (breaking.status !== 0) problems.push(`buf breaking found incompatible changes against HEAD:\n${breaking.stdout}${breaking.stderr}`);
}

if (problems.length > 0) {
  process.stderr.write(`proto check failed:\n- ${problems.join("\n- ")}\n`);
  process.exit(1);
}
process.stdout.write("proto check passed: lint clean, gen/ up to date, no breaking changes\n");

function listFiles(dir) {
  if (!existsSync(dir)) return [];
  const out = [];
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

function hasCommittedProto() {
  try {
    return execFileSync("git", ["ls-tree", "-r", "--name-only", "HEAD", "proto"], { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim() !== "";
  } catch {
    return false;
  }
}
