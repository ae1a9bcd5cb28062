import { execFile } from "node:child_process";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { ROOT, tempDir } from "../helpers/processes.js";

const run = promisify(execFile);
const SCRIPT = join(ROOT, "scripts/check-proto.mjs");

/** A copy of the proto toolchain inputs outside git, to break on purpose. */
function copyTree(): string {
  const dir = tempDir("ferry-proto-");
  for (const p of ["proto", "gen", "buf.yaml", "buf.gen.yaml"]) cpSync(join(ROOT, p), join(dir, p), { recursive: true });
  return dir;
}

async function check(root: string): Promise<{ code: number; out: string }> {
  try {
    const r = await run(process.execPath, [SCRIPT, "--root", root]);
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, out: err.stdout + err.stderr };
  }
}

describe("proto check", () => {
  it("passes on the committed tree", async () => {
    const r = await check(ROOT);
    expect(r).toMatchObject({ code: 0 });
    expect(r.out).toContain("gen/ up to date");
  });

  it("fails when gen/ is stale", async () => {
    const dir = copyTree();
    const file = join(dir, "proto/ferry/tunnel/v1/exchange.proto");
    writeFileSync(file, readFileSync(file, "utf8").replace("message Data {", "message Data {\n  // a new field nobody generated\n  bool last = 2;"));
    const r = await check(dir);
    expect(r.code).toBe(1);
    expect(r.out).toContain('gen/ferry/tunnel/v1/exchange_pb.ts is out of date with proto/: run "npm run generate"');
  });

  it("fails when a generated file is missing or extra", async () => {
    const dir = copyTree();
    writeFileSync(join(dir, "gen/ferry/stray_pb.ts"), "// not generated\n");
    const r = await check(dir);
    expect(r.code).toBe(1);
    expect(r.out).toContain("gen/ferry/stray_pb.ts is stale");
  });

  it("fails on lint errors", async () => {
    const dir = copyTree();
    const file = join(dir, "proto/ferry/tunnel/v1/exchange.proto");
    writeFileSync(file, `${readFileSync(file, "utf8")}\nenum badEnum { FIRST = 0; }\n`);
    const r = await check(dir);
    expect(r.code).toBe(1);
    expect(r.out).toContain("buf lint failed");
  });
});
