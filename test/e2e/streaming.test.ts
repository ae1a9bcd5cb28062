import { request as httpRequest, type IncomingMessage } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAdminClient } from "../../clients/cli/admin-client.js";
import { download, upload } from "../helpers/http.js";
import { ADMIN_TOKEN, type FerryProcess, type RelayProcess, startConnectorProcess, startRelayProcess } from "../helpers/processes.js";
import { patternSha256, startTestTarget, type TestTarget } from "../helpers/targets.js";

// Real processes: the relay's and connector's memory is measured from /proc.
const MB = 1024 * 1024;
/** The relay must stay under 150 MB (decimal) while moving 200 MB bodies: proof that nothing buffers a body. */
const RELAY_RSS_LIMIT = 150e6;
/**
 * The connector starts higher (undici's WASM HTTP parser and grpc-js: ~78 MB idle)
 * but must stay as far below a buffered body as the relay does.
 */
const CONNECTOR_RSS_LIMIT = 200e6;

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
    const got = await download(`${base}/bytes?size=${size}`);
    expect(got).toEqual({ status: 200, bytes: size, sha256: patternSha256(size) });
    expect(relay.peakRss()).toBeLessThan(RELAY_RSS_LIMIT);
    expect(connector.peakRss()).toBeLessThan(CONNECTOR_RSS_LIMIT);
  });

  it("uploads 200 MB intact with relay memory bounded", async () => {
    const size = 200 * MB;
    const reply = await upload(`${base}/sink`, size);
    expect(reply).toEqual({ bytes: size, sha256: patternSha256(size) });
    expect(relay.peakRss()).toBeLessThan(RELAY_RSS_LIMIT);
    expect(connector.peakRss()).toBeLessThan(CONNECTOR_RSS_LIMIT);
  });

  it("a client that stops reading stalls only its own exchange", async () => {
    // A 1 GB download whose client never reads past the first bytes.
    const stalled = await new Promise<IncomingMessage>((resolve, reject) =>
      httpRequest(`${base}/stall?size=${1024 * MB}`, resolve).on("error", reject).end(),
    );
    stalled.pause();
    // Meanwhile another exchange on the same tunnel runs to completion.
    const size = 100 * MB;
    const other = await download(`${base}/bytes?size=${size}`);
    expect(other).toEqual({ status: 200, bytes: size, sha256: patternSha256(size) });
    // The stalled exchange is held back by its window: the target could hand only a
    // bounded amount to its socket (window + socket buffers), nowhere near 1 GB.
    expect(target.stalledBytesWritten()).toBeGreaterThan(0);
    expect(target.stalledBytesWritten()).toBeLessThan(64 * MB);
    expect(relay.peakRss()).toBeLessThan(RELAY_RSS_LIMIT);
    expect(connector.peakRss()).toBeLessThan(CONNECTOR_RSS_LIMIT);
    const aborted = target.nextAbort();
    stalled.destroy();
    // Giving up on the stalled download cancels the target's response too.
    expect(await aborted).toBe(`/stall?size=${1024 * MB}`);
  });
});
