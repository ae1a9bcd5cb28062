import { createServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTestPki, type TestPki } from "../helpers/certs.js";
import { startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { runFerry } from "../helpers/processes.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { startTinyproxy } from "../helpers/tinyproxy.js";

// `ferry doctor` as an on-prem admin runs it: a real CLI process against real relays, for a healthy
// setup and for each way a setup breaks.
let relay: TestRelay;
let tlsRelay: TestRelay;
let pki: TestPki;
let target: TestTarget;
let key: string;
let tlsKey: string;

beforeAll(async () => {
  pki = makeTestPki();
  target = await startTestTarget();
  [relay, tlsRelay] = await Promise.all([startTestRelay(), startTestRelay({ tlsCert: pki.cert, tlsKey: pki.key, ca: pki.ca })]);
  key = await relay.tenantWithKey("acme");
  tlsKey = await tlsRelay.tenantWithKey("acme");
});

afterAll(async () => {
  await Promise.all([relay?.close(), tlsRelay?.close(), target?.close()]);
});

interface JsonReport {
  ok: boolean;
  steps: Array<{ name: string; ok: boolean; ms: number; detail: string; fix?: string; warnings?: string[] }>;
}

async function doctor(...args: string[]): Promise<{ code: number | null; report: JsonReport; text: string }> {
  const [json, text] = await Promise.all([runFerry(["doctor", "--json", ...args]), runFerry(["doctor", ...args])]);
  return { code: json.code, report: JSON.parse(json.stdout) as JsonReport, text: text.stdout };
}

describe("ferry doctor", () => {
  it("passes every step for a healthy setup, and says so", async () => {
    const { code, report, text } = await doctor("--relay", relay.url, "--key", key, "--target", `app=${target.url}`);
    expect(report.steps.map((s) => [s.name, s.ok])).toEqual([
      ["DNS", true],
      ["TCP", true],
      ["HTTP/2", true],
      ["relay", true],
      ["key", true],
      ["round trip", true],
      ["target app", true],
    ]);
    expect(report.ok).toBe(true);
    expect(code).toBe(0);
    expect(report.steps.find((s) => s.name === "key")!.detail).toContain('tenant "acme"');
    expect(report.steps.every((s) => typeof s.ms === "number")).toBe(true);
    expect(text).toContain("✔ round trip");
    expect(text).toContain("All checks passed.");
    // A probe takes no traffic: the relay lists no connector for it.
    expect((await relay.admin.listConnectors({ tenant: "acme" })).connectors).toEqual([]);
  });

  it("checks TLS: the chain, the expiry, and trust through --ca", async () => {
    const { code, report } = await doctor("--relay", tlsRelay.url, "--key", tlsKey, "--ca", pki.ca);
    expect(code).toBe(0);
    expect(report.steps.map((s) => s.name)).toEqual(["DNS", "TCP", "TLS", "HTTP/2", "relay", "key", "round trip"]);
    expect(report.steps[2]!.detail).toMatch(/^TLSv1\.[23], .*certificate ".+" ← ".+", expires in \d+ days$/);
  });

  it.each([
    ["a name that does not resolve", () => ["--relay", "http://no-such-relay.invalid:8080"], "DNS", /does not resolve/, /check the spelling/],
    ["a port nothing listens on", () => ["--relay", `http://127.0.0.1:${closedPort}`], "TCP", /ECONNREFUSED/, /nothing listens/],
    ["a CA this machine does not trust", () => ["--relay", tlsRelay.url], "TLS", /signed by "(CN=)?Ferry Test CA.*does not trust/, /--ca FILE/],
    ["a wrong key", () => ["--relay", relay.url, "--key", `fck_${"a".repeat(16)}_${"B".repeat(43)}`], "key", /key was refused/, /create one: ferry admin keys create/],
    ["a target that is down", () => ["--relay", relay.url, "--target", `crm=http://127.0.0.1:${closedPort}`], "target crm", /ECONNREFUSED/, /running, and reachable/],
  ])("fails on %s at the right step, with a fix", async (_what, args, step, detail, fix) => {
    const { code, report, text } = await doctor(...args());
    const failed = report.steps.filter((s) => !s.ok);
    expect(failed.map((s) => s.name)).toEqual([step]);
    expect(failed[0]!.detail).toMatch(detail);
    expect(failed[0]!.fix).toMatch(fix);
    expect(code).toBe(2);
    expect(text).toContain(`✘ ${step}`);
    expect(text).toContain("1 check(s) failed.");
  });

  it("goes through an HTTP proxy with credentials, and explains a refused CONNECT", async () => {
    const proxy = await startTinyproxy({ user: "ferry", password: "s3cret" });
    try {
      const good = await doctor("--relay", relay.url, "--key", key, "--proxy", `http://ferry:s3cret@127.0.0.1:${proxy.port}`);
      expect(good.code).toBe(0);
      expect(good.report.steps.map((s) => s.name)).toEqual(["DNS", "TCP via proxy", "HTTP/2", "relay", "key", "round trip"]);
      const bad = await doctor("--relay", relay.url, "--proxy", `http://ferry:wrong@127.0.0.1:${proxy.port}`);
      expect(bad.code).toBe(2);
      const failed = bad.report.steps.find((s) => !s.ok)!;
      expect(failed).toMatchObject({ name: "TCP via proxy", detail: expect.stringMatching(/refused CONNECT .*: 40[17]/), fix: expect.stringMatching(/credentials/) });
      expect(bad.text).not.toContain("wrong"); // the password never appears
    } finally {
      await proxy.close();
    }
  });

  it("checks the relay's own certificate files with --certs", async () => {
    const good = await runFerry(["doctor", "--certs", "--tls-cert", pki.cert, "--tls-key", pki.key, "--public-host", "localhost"]);
    expect(good.code).toBe(0);
    expect(good.stdout).toContain("✔ chain: 2 certificate(s)");
    expect(good.stdout).toContain("✔ covers localhost");
    const other = makeTestPki();
    const mismatch = await runFerry(["doctor", "--certs", "--json", "--tls-cert", pki.cert, "--tls-key", other.key]);
    expect(mismatch.code).toBe(2);
    expect(JSON.parse(mismatch.stdout)).toMatchObject({ ok: false, steps: expect.arrayContaining([expect.objectContaining({ status: "fail" })]) });
    expect((await runFerry(["doctor", "--certs"])).stderr).toContain("--certs needs --tls-cert and --tls-key");
  });

  it("refuses bad usage with exit 1", async () => {
    const r = await runFerry(["doctor"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("give --relay URL");
  });
});

let closedPort = 0;
beforeAll(async () => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  closedPort = (server.address() as import("node:net").AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
});
