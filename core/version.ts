import { readFileSync } from "node:fs";

/**
 * Set only in a bundle (the connector binary): esbuild's `define` puts package.json's version here, since a
 * CommonJS bundle has no import.meta.url to find package.json by. Everywhere else it is not declared at all.
 */
declare const __FERRY_VERSION__: string | undefined;

/** The package version: package.json's, read once (one level up from core/, two from dist/core/), or the bundle's copy of it. */
export const FERRY_VERSION: string = typeof __FERRY_VERSION__ === "string" ? __FERRY_VERSION__ : fromPackageJson();

function fromPackageJson(): string {
  for (const rel of ["../package.json", "../../package.json"]) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "ferry" && pkg.version) return pkg.version;
    } catch {
      // try the next candidate
    }
  }
  return "0.0.0";
}
