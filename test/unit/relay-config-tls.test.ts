import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { resolveRelaySettings } from "../../services/relay/relay-config.js";
import { tempDir } from "../helpers/processes.js";

describe("relay TLS settings", () => {
  it("takes --public-host from the flag or the file, lower-cased", () => {
    expect(resolveRelaySettings({ publicHost: "Relay.Example.com." }, {}).publicHost).toBe("relay.example.com");
    const file = join(tempDir(), "relay.yaml");
    writeFileSync(file, "publicHost: relay.example.org\n");
    expect(resolveRelaySettings({ config: file }, {}).publicHost).toBe("relay.example.org");
    expect(resolveRelaySettings({}, {}).publicHost).toBeUndefined();
  });

  it("refuses a public host with a scheme or port", () => {
    expect(() => resolveRelaySettings({ publicHost: "https://relay.example.com" }, {})).toThrow(/--public-host .* is not a host name/);
    expect(() => resolveRelaySettings({ publicHost: "relay.example.com:443" }, {})).toThrow(/not a host name/);
  });

  it("keeps --connector-ca with TLS, refuses it without", () => {
    expect(resolveRelaySettings({ tlsCert: "c.pem", tlsKey: "k.pem", connectorCa: "ca.pem" }, {}).connectorCa).toBe("ca.pem");
    expect(() => resolveRelaySettings({ connectorCa: "ca.pem" }, {})).toThrow(/needs TLS/);
  });
});
