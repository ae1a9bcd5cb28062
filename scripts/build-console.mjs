#!/usr/bin/env node
// Builds the web console (clients/console/) into dist/console/: one script, one stylesheet, one page, no
// external resource (the relay serves them with a CSP that allows nothing else). Part of `npm run build`.
import { copyFileSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const src = join(root, "clients/console");
const out = join(root, "dist/console");
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(src, "main.tsx")],
  outfile: join(out, "app.js"),
  bundle: true,
  minify: true,
  format: "iife",
  target: "es2020",
  jsx: "automatic",
  jsxImportSource: "preact",
  legalComments: "none",
  logLevel: "warning",
});
copyFileSync(join(src, "index.html"), join(out, "index.html"));
copyFileSync(join(src, "app.css"), join(out, "app.css"));
if (process.argv.includes("--size")) {
  for (const name of ["app.js", "app.css", "index.html"]) {
    const body = readFileSync(join(out, name));
    process.stdout.write(`${name}: ${body.length} bytes, ${gzipSync(body).length} gzipped\n`);
  }
}
