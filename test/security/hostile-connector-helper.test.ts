import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HostileConnector } from "../helpers/hostile-connector.js";
import { startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { request } from "../helpers/http.js";

// The helper the security tests build on: a connector that speaks the protocol by hand.
let relay: TestRelay;
let key: string;

beforeAll(async () => {
  relay = await startTestRelay();
  key = await relay.tenantWithKey("acme");
});

afterAll(async () => {
  await relay?.close();
});

describe("hostile connector helper", () => {
  it("gets Welcome, receives an exchange and answers it", async () => {
    const c = await HostileConnector.connect(relay.url, key);
    expect(c.welcome?.tenant).toBe("acme");
    const reply = request(`${relay.url}/relay/acme/app/hello`);
    const ex = await c.nextRequest();
    expect(ex?.frame.kind.case).toBe("requestHead");
    c.respond(ex!.id, 200, [["content-type", "text/plain"]], "hi");
    const res = await reply;
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("hi");
    c.destroy();
  });

  it("sees the relay end a tunnel whose key is wrong", async () => {
    const c = await HostileConnector.open(relay.url, "fck_0123456789abcdef_nope");
    c.hello();
    const end = await c.ended;
    expect(end.grpcStatus).toBe(16);
  });
});
