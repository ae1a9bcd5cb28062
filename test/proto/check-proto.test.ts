import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { copyOfRepo, runCheck } from "../helpers/check-script.js";
import { ROOT } from "../helpers/processes.js";

/** A copy of the proto toolchain inputs outside git, to break on purpose. */
const copyTree = () => copyOfRepo("ferry-proto-", ["proto", "gen", "buf.yaml", "buf.gen.yaml"]);
const check = (root: string) => runCheck("check-proto.mjs", root);

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
