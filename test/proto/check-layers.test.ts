import { execFile } from "node:child_process";
import { appendFileSync, cpSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { ROOT, tempDir } from "../helpers/processes.js";

const run = promisify(execFile);
const SCRIPT = join(ROOT, "scripts/check-layers.mjs");

/** A copy of the code outside git, to break the floor plan on purpose. */
function copyTree(): string {
  const dir = tempDir("ferry-layers-");
  for (const p of ["core", "services", "clients", "gen"]) cpSync(join(ROOT, p), join(dir, p), { recursive: true });
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

describe("layer check", () => {
  it("passes on the committed tree", async () => {
    const r = await check(ROOT);
    expect(r).toMatchObject({ code: 0 });
    expect(r.out).toContain("layers and imports as planned");
  });

  it.each([
    ["core importing the relay", "core/errors.ts", 'import type { Relay } from "../services/relay/relay.js";\n', "core/errors.ts imports services/relay/relay.ts: core/ imports only gen/ and packages"],
    ["the relay importing the connector", "services/gateway/trace.ts", 'export { startConnector } from "../../clients/connector/connector.js";\n', "services/gateway/trace.ts imports clients/connector/connector.ts: the relay (services/) never imports clients/"],
    ["the connector importing the relay, even lazily", "clients/connector/cors.ts", 'export const late = () => import("../../services/relay/relay.js");\n', "only clients/cli/ sees both ends"],
    ["a type-only import that closes a cycle", "core/exchange/ids.ts", 'import type { Exchange } from "./exchange.js";\nexport type Unused = Exchange;\n', "import cycle between files: core/exchange/exchange.ts <-> core/exchange/ids.ts"],
    ["two folders importing each other", "services/http/grpc-status.ts", 'import type { Gateway } from "../gateway/gateway.js";\nexport type G = Gateway;\n', "import cycle between folders"],
  ])("fails on %s", async (_what, file, line, message) => {
    const dir = copyTree();
    appendFileSync(join(dir, file), line);
    const r = await check(dir);
    expect(r.code).toBe(1);
    expect(r.out).toContain(message);
  });

  it("does not take an import in a comment for one", async () => {
    const dir = copyTree();
    writeFileSync(join(dir, "core/comment-only.ts"), '// import { x } from "../services/relay/relay.js";\n/* import("../clients/cli/main.js") */\nexport const ok = 1;\n');
    expect((await check(dir)).code).toBe(0);
  });
});
