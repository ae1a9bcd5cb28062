import { appendFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { copyOfRepo, runCheck } from "../helpers/check-script.js";
import { ROOT } from "../helpers/processes.js";

/** A copy of the code outside git, to break the floor plan on purpose. */
const copyTree = () => copyOfRepo("ferry-layers-", ["core", "services", "clients", "gen"]);
const check = (root: string) => runCheck("check-layers.mjs", root);

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
