import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";

let relay: TestRelay;
let target: TestTarget;
let connector: Connector;
let base: string;

beforeAll(async () => {
  target = await startTestTarget();
  relay = await startTestRelay();
  const key = await relay.tenantWithKey("acme");
  connector = await startTestConnector(relay.url, key, { app: target.url });
  base = `${relay.url}/relay/acme/app`;
});

afterAll(async () => {
  await connector?.stop();
  await relay?.close();
  await target?.close();
});

describe("gateway", () => {
  it.each(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND"])("forwards %s with its body", async (method) => {
    const body = method === "GET" || method === "OPTIONS" ? undefined : `body of ${method}`;
    const res = await fetch(`${base}/echo?q=1`, { method, body });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-method")).toBe(method);
    expect(await res.text()).toBe(body ?? "");
    expect(target.seen.at(-1)).toMatchObject({ method, url: "/echo?q=1" });
  });

  it("forwards HEAD without a body", async () => {
    const res = await fetch(`${base}/bytes?size=5000`, { method: "HEAD" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-length")).toBe("5000");
    expect(await res.text()).toBe("");
  });
});
