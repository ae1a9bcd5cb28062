import { request as httpRequest, type IncomingMessage } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAdminClient } from "../../clients/cli/admin-client.js";
import { download, upload } from "../helpers/http.js";
import {
  ADMIN_TOKEN,
  type FerryProcess,
  type RelayProcess,
  rssGrowthDuring,
  startConnectorProcess,
  startRelayProcess,
} from "../helpers/processes.js";
import { patternSha256, startTestTarget, type TestTarget } from "../helpers/targets.js";

// Real processes: the relay's and connector's memory is measured from /proc.
const MB = 1024 * 1024;
/**
 * A process that buffered a 200 MB body would grow by at least that much; streaming costs windows and
 * socket buffers only. Growth, not size: the idle size drifts by tens of MB from machine to machine.
 */
const BODY_GROWTH_LIMIT = 120 * MB;

let relay: RelayProcess;
let connector: FerryProcess;
let target: TestTarget;
let base: string;

beforeAll(async () => {
  target = await startTestTarget();
  relay = await startRelayProcess();
  const admin = createAdminClient(relay.url, ADMIN_TOKEN);
  await admin.createTenant({ name: "acme" });
  const { secret } = await admin.createKey({ tenant: "acme" });
  // One tunnel, so the head-of-line test puts both exchanges on the same stream.
  connector = startConnectorProcess(relay.url, secret, { app: target.url }, { args: ["--tunnels", "1"] });
  await connector.waitForCount("tunnel connected", 1);
  base = `${relay.url}/relay/acme/app`;
});

afterAll(async () => {
  await connector?.stop();
  await relay?.stop();
  await target?.close();
});

describe("streaming", () => {
  it("downloads 200 MB intact with relay memory bounded", async () => {
    const size = 200 * MB;
    const growth = await rssGrowthDuring([relay, connector], async () => {
      expect(await download(`${base}/bytes?size=${size}`)).toEqual({ status: 200, bytes: size, sha256: patternSha256(size) });
    });
    for (const g of growth) expect(g).toBeLessThan(BODY_GROWTH_LIMIT);
  });

  it("uploads 200 MB intact with relay memory bounded", async () => {
    const size = 200 * MB;
    const growth = await rssGrowthDuring([relay, connector], async () => {
      expect(await upload(`${base}/sink`, size)).toEqual({ bytes: size, sha256: patternSha256(size) });
    });
    for (const g of growth) expect(g).toBeLessThan(BODY_GROWTH_LIMIT);
  });

  it("a client that stops reading stalls only its own exchange", async () => {
    let stalled: IncomingMessage | undefined;
    const growth = await rssGrowthDuring([relay, connector], async () => {
      // A 1 GB download whose client never reads past the first bytes.
      stalled = await new Promise<IncomingMessage>((resolve, reject) =>
        httpRequest(`${base}/stall?size=${1024 * MB}`, resolve).on("error", reject).end(),
      );
      stalled.pause();
      // Meanwhile another exchange on the same tunnel runs to completion.
      const size = 100 * MB;
      expect(await download(`${base}/bytes?size=${size}`)).toEqual({ status: 200, bytes: size, sha256: patternSha256(size) });
    });
    // The stalled exchange is held back by its window: the target could hand only a
    // bounded amount to its socket (window + socket buffers), nowhere near 1 GB.
    expect(target.stalledBytesWritten()).toBeGreaterThan(0);
    expect(target.stalledBytesWritten()).toBeLessThan(64 * MB);
    for (const g of growth) expect(g).toBeLessThan(BODY_GROWTH_LIMIT);
    const aborted = target.nextAbort();
    stalled?.destroy();
    // Giving up on the stalled download cancels the target's response too.
    expect(await aborted).toBe(`/stall?size=${1024 * MB}`);
  });
});
