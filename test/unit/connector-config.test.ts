import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type ConnectorFlags, loadConnectorSettings } from "../../clients/connector/connector-config.js";
import { FerryError } from "../../core/errors.js";

const KEY = "fck_0a1b2c3d4e5f6g7h_HVDIvBXJGfcgcUwf0C9moS5ppf-f3m2qh_BnG9buZVU";
const KEY2 = "fck_zzzzzzzzzzzzzzzz_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

const dir = mkdtempSync(join(tmpdir(), "ferry-connector-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileSeq = 0;
function file(ext: string, text: string): string {
  const path = join(dir, `config-${fileSeq++}.${ext}`);
  writeFileSync(path, text);
  return path;
}

const base: ConnectorFlags = { relay: ["http://relay.example:8080"], key: KEY, target: ["app=http://127.0.0.1:3000"] };
const load = (flags: ConnectorFlags, env: NodeJS.ProcessEnv = {}) => loadConnectorSettings(flags, env);

function invalid(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FerryError);
    expect((e as FerryError).kind).toBe("invalid_argument");
    return (e as FerryError).message;
  }
  throw new Error("expected an invalid_argument FerryError");
}

describe("loadConnectorSettings from flags", () => {
  it("builds settings with the defaults", () => {
    const s = load(base);
    expect(s.relays.map(String)).toEqual(["http://relay.example:8080/"]);
    expect(s.key).toBe(KEY);
    expect(s.targets).toEqual([
      {
        name: "app",
        origin: "http://127.0.0.1:3000",
        basePath: "",
        transport: "http1",
        host: { kind: "target" },
        cors: undefined,
        allowedPaths: [],
        allowedMethods: [],
      },
    ]);
    expect(s).toMatchObject({
      tunnels: 2,
      maxConcurrentExchanges: 1024,
      reconnectMinMs: 500,
      reconnectMaxMs: 20_000,
      graceMs: 30_000,
      logLevel: "info",
    });
    expect(s.id).toMatch(/^[a-z0-9]{16}$/);
  });

  it("parses several relays and targets, with origin and basePath (trailing slashes stripped)", () => {
    const s = load({
      ...base,
      relay: ["https://a.example", "http://b.example:81/"],
      target: ["api=https://10.0.0.5:8443/v1/", "root=http://svc/", "deep=http://svc:80/a/b//", "eq=http://svc/x?"],
    });
    expect(s.relays.map((u) => u.href)).toEqual(["https://a.example/", "http://b.example:81/"]);
    expect(s.targets).toMatchObject([
      { name: "api", origin: "https://10.0.0.5:8443", basePath: "/v1", transport: "tls" },
      { name: "root", origin: "http://svc", basePath: "" },
      { name: "deep", origin: "http://svc", basePath: "/a/b" },
      { name: "eq", origin: "http://svc", basePath: "/x" },
    ]);
  });

  it("splits a target spec at the first '='", () => {
    const s = load({ ...base, target: ["app=http://svc/p=1"] });
    expect(s.targets[0]).toMatchObject({ name: "app", origin: "http://svc", basePath: "/p=1" });
  });

  it("takes the key from FERRY_CONNECTOR_KEY when no flag gives one; the flag wins", () => {
    expect(load({ ...base, key: undefined }, { FERRY_CONNECTOR_KEY: KEY2 }).key).toBe(KEY2);
    expect(load(base, { FERRY_CONNECTOR_KEY: KEY2 }).key).toBe(KEY);
  });

  it("warns when a config file others can read holds a secret: the key, or proxy credentials", () => {
    const warned = (text: string, mode: number) => {
      const path = file("yaml", text);
      chmodSync(path, mode);
      const warnings: string[] = [];
      loadConnectorSettings({ config: path }, {}, (l) => warnings.push(l));
      return warnings.filter((w) => w.includes("holds a secret"));
    };
    const targets = "targets: [{name: app, url: http://127.0.0.1:3000}]\n";
    expect(warned(`relays: [http://relay.example:8080]\nkey: ${KEY}\n${targets}`, 0o644)).toHaveLength(1);
    expect(warned(`relays: [http://relay.example:8080]\nkey: ${KEY}\n${targets}`, 0o600)).toEqual([]);
    expect(warned(`relays: [http://relay.example:8080]\nkey: ${KEY}\nproxy: http://u:pw@proxy:3128\n${targets}`, 0o640)).toHaveLength(1);
    const keyless = `relays: [http://relay.example:8080]\nproxy: http://proxy:3128\n${targets}`;
    const path = file("yaml", keyless);
    chmodSync(path, 0o644);
    const warnings: string[] = [];
    loadConnectorSettings({ config: path }, { FERRY_CONNECTOR_KEY: KEY }, (l) => warnings.push(l));
    expect(warnings).toEqual([]);
  });

  it("reads the key from --key-file, warning when other users can read the file", () => {
    const path = file("key", `${KEY}\n`);
    chmodSync(path, 0o600);
    const warnings: string[] = [];
    const flags = { ...base, key: undefined, keyFile: path };
    expect(loadConnectorSettings(flags, {}, (l) => warnings.push(l)).key).toBe(KEY);
    expect(warnings).toEqual([]);
    chmodSync(path, 0o644);
    loadConnectorSettings(flags, {}, (l) => warnings.push(l));
    expect(warnings).toEqual([`warning: --key-file ${path} can be read by other users; chmod 600 it`]);
    expect(invalid(() => load({ ...base, keyFile: path }))).toBe("give --key or --key-file, not both");
    expect(invalid(() => load({ ...base, key: undefined, keyFile: join(dir, "nope") }))).toMatch(/--key-file .*nope: no such file/);
    expect(invalid(() => load({ ...base, key: undefined, keyFile: file("key", "\n") }))).toMatch(/is empty/);
    expect(invalid(() => load({ ...base, key: undefined, keyFile: file("key", `${KEY} ${KEY2}`) }))).toMatch(/must hold the secret alone/);
  });

  it("takes a --for window of at most 365 days, the most the relay accepts", () => {
    expect(load({ ...base, for: "365d" }).runForMs).toBe(365 * 86_400_000);
    expect(invalid(() => load({ ...base, for: "400d" }))).toBe("--for must be at most 365 days (leave it out to stay connected)");
  });

  it("applies the numeric, duration, id and log level flags", () => {
    const s = load({
      ...base,
      tunnels: "16",
      maxConcurrent: "10000",
      reconnectMin: "250ms",
      reconnectMax: "1m",
      grace: "1h30m",
      id: "conn-1.a_B",
      logLevel: "debug",
    });
    expect(s).toMatchObject({
      tunnels: 16,
      maxConcurrentExchanges: 10_000,
      reconnectMinMs: 250,
      reconnectMaxMs: 60_000,
      graceMs: 5_400_000,
      id: "conn-1.a_B",
      logLevel: "debug",
    });
    expect(load({ ...base, tunnels: "1", maxConcurrent: "1", reconnectMin: "10ms", reconnectMax: "10ms" })).toMatchObject({
      tunnels: 1,
      maxConcurrentExchanges: 1,
      reconnectMinMs: 10,
      reconnectMaxMs: 10,
    });
  });

  it.each<[string, ConnectorFlags, RegExp]>([
    ["missing relay", { ...base, relay: undefined }, /^no relay: give --relay URL/],
    ["missing key", { ...base, key: undefined }, /^no connector key: set FERRY_CONNECTOR_KEY, or give --key-file FILE/],
    ["relay with a path", { ...base, relay: ["http://relay.example/ferry"] }, /^relays\[0\] "http:\/\/relay\.example\/ferry" must not have a path or query$/],
    ["relay with a query", { ...base, relay: ["http://relay.example/?x=1"] }, /must not have a path or query/],
    ["relay not http(s)", { ...base, relay: ["http://ok", "ws://relay.example"] }, /^relays\[1\] "ws:\/\/relay\.example" must start with http:\/\/ or https:\/\//],
    ["relay not a URL", { ...base, relay: ["not a url"] }, /^relays\[0\] "not a url" is not a URL$/],
    ["relay without a scheme", { ...base, relay: ["relay.example:8080"] }, /^relays\[0\] "relay\.example:8080" must start with http:\/\/ or https:\/\//],
    ["target without '='", { ...base, target: ["app"] }, /^--target "app" must be NAME=URL/],
    ["target with empty name", { ...base, target: ["=http://svc"] }, /^--target "=http:\/\/svc" must be NAME=URL/],
    ["target name not a DNS label", { ...base, target: ["ok=http://a", "My_App=http://svc"] }, /^targets\[1\]\.name "My_App" is not a DNS label/],
    ["target name too long", { ...base, target: [`${"a".repeat(64)}=http://svc`] }, /is not a DNS label/],
    ["duplicate target", { ...base, target: ["app=http://a", "app=http://b"] }, /^targets\[1\]\.name "app" is listed twice$/],
    ["target not http(s)", { ...base, target: ["app=ftp://svc"] }, /^targets\[0\]\.url "ftp:\/\/svc" must start with http:\/\/, https:\/\/ or h2c:\/\//],
    ["target not a URL", { ...base, target: ["app=svc:80"] }, /^targets\[0\]\.url "svc:80" must start with http/],
    ["target with a query", { ...base, target: ["app=http://svc/?a=1"] }, /must not have a query, fragment or credentials/],
    ["target with credentials", { ...base, target: ["app=http://u:p@svc/"] }, /must not have a query, fragment or credentials/],
    ["tunnels 0", { ...base, tunnels: "0" }, /^tunnels must be between 1 and 16$/],
    ["tunnels 17", { ...base, tunnels: "17" }, /^tunnels must be between 1 and 16$/],
    ["tunnels not whole", { ...base, tunnels: "1.5" }, /^tunnels "1.5" is not a whole number$/],
    ["tunnels not a number", { ...base, tunnels: "two" }, /^tunnels "two" is not a whole number$/],
    ["max concurrent 0", { ...base, maxConcurrent: "0" }, /^max concurrent exchanges must be between 1 and 10000$/],
    ["max concurrent too big", { ...base, maxConcurrent: "10001" }, /^max concurrent exchanges must be between 1 and 10000$/],
    ["bad reconnect min", { ...base, reconnectMin: "abc" }, /^reconnect min: "abc" is not a duration/],
    ["bad reconnect max", { ...base, reconnectMax: "10x" }, /^reconnect max: "10x" is not a duration/],
    ["bad grace", { ...base, grace: "soon" }, /^grace period: "soon" is not a duration/],
    ["reconnect min > max", { ...base, reconnectMin: "30s", reconnectMax: "10s" }, /^reconnect delays need 10ms <= min <= max \(got 30000ms and 10000ms\)$/],
    ["reconnect min > default max", { ...base, reconnectMin: "21s" }, /\(got 21000ms and 20000ms\)/],
    ["reconnect min < 10ms", { ...base, reconnectMin: "5ms" }, /^reconnect delays need 10ms <= min <= max/],
    ["bad id", { ...base, id: "has space" }, /^id "has space" may use only letters, digits/],
    ["bad log level", { ...base, logLevel: "loud" }, /^log level "loud" is not one of trace, debug, info/],
  ])("rejects %s", (_name, flags, message) => {
    expect(invalid(() => load(flags))).toMatch(message);
  });

  it.each([
    ["not a key", "hello"],
    ["wrong prefix", KEY.replace(/^fck_/, "fat_")],
    ["upper-case id", "fck_0A1B2C3D4E5F6G7H_HVDIvBXJGfcgcUwf0C9moS5ppf-f3m2qh_BnG9buZVU"],
    ["short id", "fck_0a1b2c3d4e5f6g7_HVDIvBXJGfcgcUwf0C9moS5ppf-f3m2qh_BnG9buZVU"],
    ["long id", "fck_0a1b2c3d4e5f6g7h8_HVDIvBXJGfcgcUwf0C9moS5ppf-f3m2qh_BnG9buZVU"],
    ["no secret", "fck_0a1b2c3d4e5f6g7h_"],
    ["short secret", "fck_0a1b2c3d4e5f6g7h_abc"],
    ["bad secret characters", "fck_0a1b2c3d4e5f6g7h_HVDIvBXJGfcgcUwf0C9m+S5ppf-f3m2qh/BnG9buZVU"],
    ["surrounding space", ` ${KEY}`],
  ])("rejects a malformed key (%s)", (_name, key) => {
    expect(invalid(() => load({ ...base, key }))).toMatch(/^the connector key is not a Ferry connector key \(it starts with "fck_"/);
  });

  it("rejects a malformed key from the environment too", () => {
    expect(invalid(() => load({ ...base, key: undefined }, { FERRY_CONNECTOR_KEY: "nope" }))).toMatch(/not a Ferry connector key/);
  });

  it("errors are FerryError invalid_argument with code invalid_config", () => {
    try {
      load({ ...base, relay: [] });
      expect.unreachable();
    } catch (e) {
      expect(e).toMatchObject({ name: "FerryError", kind: "invalid_argument", code: "invalid_config" });
    }
  });
});

describe("loadConnectorSettings from a config file", () => {
  const yamlCamel = `
relays:
  - https://relay.example
key: ${KEY}
targets:
  - name: web
    url: http://10.0.0.7:8080/app/
  - name: api
    url: https://api.internal
tunnels: 4
id: edge-1
maxConcurrentExchanges: 100
reconnectMin: 250ms
reconnectMax: 2m
gracePeriod: 45s
logLevel: warn
`;

  const expected = {
    key: KEY,
    targets: [
      { name: "web", origin: "http://10.0.0.7:8080", basePath: "/app" },
      { name: "api", origin: "https://api.internal", basePath: "" },
    ],
    tunnels: 4,
    id: "edge-1",
    maxConcurrentExchanges: 100,
    reconnectMinMs: 250,
    reconnectMaxMs: 120_000,
    graceMs: 45_000,
    logLevel: "warn",
  };

  it("reads YAML with camelCase proto JSON names and friendly durations", () => {
    const s = load({ config: file("yaml", yamlCamel) });
    expect(s).toMatchObject(expected);
    expect(s.relays.map((u) => u.href)).toEqual(["https://relay.example/"]);
  });

  it("reads YAML with snake_case proto names", () => {
    const text = yamlCamel
      .replace("maxConcurrentExchanges", "max_concurrent_exchanges")
      .replace("reconnectMin", "reconnect_min")
      .replace("reconnectMax", "reconnect_max")
      .replace("gracePeriod", "grace_period")
      .replace("logLevel", "log_level");
    expect(load({ config: file("yml", text) })).toMatchObject(expected);
  });

  it("reads JSON, accepting proto JSON durations as well", () => {
    const json = {
      relays: ["https://relay.example"],
      key: KEY,
      targets: [
        { name: "web", url: "http://10.0.0.7:8080/app/" },
        { name: "api", url: "https://api.internal" },
      ],
      tunnels: 4,
      id: "edge-1",
      max_concurrent_exchanges: 100,
      reconnectMin: "0.250s",
      reconnect_max: "2m",
      gracePeriod: "45s",
      logLevel: "warn",
    };
    expect(load({ config: file("json", JSON.stringify(json)) })).toMatchObject(expected);
  });

  it("reads h2c:// targets, Host settings and CORS policies", () => {
    const s = load({
      config: file(
        "yaml",
        [
          "relays: [http://r]",
          `key: ${KEY}`,
          "targets:",
          "  - {name: grpc, url: 'h2c://10.0.0.7:50051/'}",
          "  - {name: web, url: 'https://crm.local', hostHeader: original, cors: {allowedOrigins: ['https://app.example.com'], allowCredentials: true, maxAge: 10m}}",
          "  - {name: fixed, url: 'http://svc', host_header: 'crm.internal:8080'}",
        ].join("\n"),
      ),
    });
    expect(s.targets).toMatchObject([
      { name: "grpc", origin: "http://10.0.0.7:50051", basePath: "", transport: "h2c", host: { kind: "target" }, cors: undefined },
      { name: "web", origin: "https://crm.local", transport: "tls", host: { kind: "original" } },
      { name: "fixed", transport: "http1", host: { kind: "fixed", value: "crm.internal:8080" } },
    ]);
    expect(s.targets[1]!.cors).toBeDefined();
  });

  it.each([
    ["a bad Host setting", "{name: a, url: 'http://a', hostHeader: 'evil.com/path'}", /targets\[0\]\.hostHeader "evil\.com\/path" must be "target", "original" or a host\[:port\]/],
    ["CORS without origins", "{name: a, url: 'http://a', cors: {allowCredentials: true}}", /targets\[0\]\.cors: allowedOrigins is empty/],
    ["CORS '*' with credentials", "{name: a, url: 'http://a', cors: {allowedOrigins: ['*'], allowCredentials: true}}", /"\*" cannot be combined with allowCredentials/],
    ["a CORS origin with a path", "{name: a, url: 'http://a', cors: {allowedOrigins: ['https://x.example/app']}}", /allowedOrigins "https:\/\/x\.example\/app" must be/],
    ["a bad CORS header name", "{name: a, url: 'http://a', cors: {allowedOrigins: ['*'], allowedHeaders: ['x y']}}", /allowedHeaders "x y" is not a header name/],
    ["an h2c target without a host", "{name: a, url: 'h2c:///x'}", /targets\[0\]\.url "h2c:\/\/\/x" has no host/],
  ])("rejects %s", (_name, target, message) => {
    expect(invalid(() => load({ config: file("yaml", `relays: [http://r]\nkey: ${KEY}\ntargets: [${target}]\n`) }))).toMatch(message);
  });

  it("reads the corporate-network and local-control settings", () => {
    const ca = file("pem", "ca");
    const s = load({
      config: file(
        "yaml",
        [
          "relays: [https://r]",
          `key: ${KEY}`,
          "targets: [{name: crm, url: 'http://c', allowedPaths: [/auth/, /rest/], allowedMethods: [get, POST]}]",
          "proxy: http://user:secret@proxy.corp:3128",
          `ca: ${ca}`,
          "runFor: 2h",
          "auditLog: /tmp/ferry-audit.jsonl",
          "controlListen: 127.0.0.1:7070",
        ].join("\n"),
      ),
    });
    expect(s.targets[0]).toMatchObject({ allowedPaths: ["/auth/", "/rest/"], allowedMethods: ["GET", "POST"] });
    expect(s.proxy?.href).toBe("http://user:secret@proxy.corp:3128/");
    expect(s).toMatchObject({ ca, runForMs: 7_200_000, auditLog: "/tmp/ferry-audit.jsonl", controlListen: { host: "127.0.0.1", port: 7070 }, insecureSkipVerify: false });
    expect(load({ ...base, for: "90m", insecureSkipVerify: true })).toMatchObject({ runForMs: 5_400_000, insecureSkipVerify: true });
  });

  it.each([
    ["a path prefix without '/'", { targets: "[{name: a, url: 'http://a', allowedPaths: [rest]}]" }, /targets\[0\]\.allowedPaths\[0\] "rest" must be a path prefix/],
    ["a path prefix with '..'", { targets: "[{name: a, url: 'http://a', allowedPaths: [/a/../b]}]" }, /allowedPaths\[0\] "\/a\/\.\.\/b" must be a path prefix/],
    ["a bad method", { targets: "[{name: a, url: 'http://a', allowedMethods: ['GET /']}]" }, /allowedMethods\[0\] "GET \/" is not an HTTP method/],
    ["a control endpoint off loopback", { controlListen: "0.0.0.0:7070" }, /control listen "0\.0\.0\.0:7070" must be on the loopback interface/],
    ["a proxy that is not http://", { proxy: "socks5://p:1080" }, /proxy "socks5:\/\/p:1080" must start with http:\/\//],
    ["an unreadable CA file", { ca: "/nonexistent/ca.pem" }, /ca: cannot read \/nonexistent\/ca\.pem/],
    ["a client certificate without a key", { tlsCert: "/etc/hostname" }, /needs both --tls-cert and --tls-key/],
  ])("rejects %s", (_name, extra, message) => {
    const { targets, ...rest } = extra as Record<string, string>;
    const lines = ["relays: [https://r]", `key: ${KEY}`, `targets: ${targets ?? "[{name: a, url: 'http://a'}]"}`];
    for (const [k, v] of Object.entries(rest)) lines.push(`${k}: '${v}'`);
    expect(invalid(() => load({ config: file("yaml", lines.join("\n")) }))).toMatch(message);
  });

  it("applies defaults for what the file leaves out", () => {
    const s = load({ config: file("yaml", `relays: [http://r]\nkey: ${KEY}\ntargets: [{name: a, url: "http://a"}]\n`) });
    expect(s).toMatchObject({ tunnels: 2, maxConcurrentExchanges: 1024, reconnectMinMs: 500, reconnectMaxMs: 20_000, graceMs: 30_000, logLevel: "info" });
  });

  it("lets flags override file values", () => {
    const config = file("yaml", yamlCamel);
    const s = load({
      config,
      relay: ["http://other.example"],
      key: KEY2,
      target: ["only=http://127.0.0.1:9"],
      tunnels: "3",
      maxConcurrent: "7",
      reconnectMin: "1s",
      reconnectMax: "3s",
      grace: "5s",
      id: "flag-id",
      logLevel: "error",
    });
    expect(s.relays.map((u) => u.href)).toEqual(["http://other.example/"]);
    expect(s).toMatchObject({
      key: KEY2,
      targets: [{ name: "only", origin: "http://127.0.0.1:9", basePath: "" }],
      tunnels: 3,
      maxConcurrentExchanges: 7,
      reconnectMinMs: 1000,
      reconnectMaxMs: 3000,
      graceMs: 5000,
      id: "flag-id",
      logLevel: "error",
    });
  });

  it("prefers the file's key to FERRY_CONNECTOR_KEY, and uses the variable when the file has none", () => {
    expect(load({ config: file("yaml", yamlCamel) }, { FERRY_CONNECTOR_KEY: KEY2 }).key).toBe(KEY);
    const noKey = file("yaml", yamlCamel.replace(`key: ${KEY}\n`, ""));
    expect(load({ config: noKey }, { FERRY_CONNECTOR_KEY: KEY2 }).key).toBe(KEY2);
  });

  it("rejects unknown keys, naming the key and the file", () => {
    const path = file("yaml", `${yamlCamel}bogusSetting: 1\n`);
    const message = invalid(() => load({ config: path }));
    expect(message).toContain(path);
    expect(message).toContain('"bogusSetting"');
  });

  it("rejects unknown keys inside targets", () => {
    const path = file("json", JSON.stringify({ relays: ["http://r"], key: KEY, targets: [{ name: "a", url: "http://a", weight: 2 }] }));
    expect(invalid(() => load({ config: path }))).toContain('"weight"');
  });

  it("rejects a bad duration in the file, naming the field", () => {
    const path = file("yaml", yamlCamel.replace("reconnectMin: 250ms", "reconnectMin: soon"));
    const message = invalid(() => load({ config: path }));
    expect(message).toContain(path);
    expect(message).toMatch(/reconnectMin: "soon" is not a duration/);
  });

  it("prefixes validation errors with the file name", () => {
    const path = file("yaml", yamlCamel.replace("tunnels: 4", "tunnels: 40"));
    expect(invalid(() => load({ config: path }))).toBe(`${path}: tunnels must be between 1 and 16`);
    const dup = file("yaml", yamlCamel.replace("name: api", "name: web"));
    expect(invalid(() => load({ config: dup }))).toBe(`${dup}: targets[1].name "web" is listed twice`);
  });

  it("rejects reconnect min > max given in the file", () => {
    const path = file("yaml", yamlCamel.replace("reconnectMin: 250ms", "reconnectMin: 5m"));
    expect(invalid(() => load({ config: path }))).toMatch(/reconnect delays need 10ms <= min <= max \(got 300000ms and 120000ms\)/);
  });

  it.each([
    ["json", "{ not json", /is not valid JSON/],
    ["yaml", "relays: [unclosed", /is not valid YAML/],
    ["yaml", "- a\n- b\n", /must hold a mapping of settings/],
    ["yaml", "just a string\n", /must hold a mapping of settings/],
    ["json", "null", /must hold a mapping of settings/],
  ])("rejects a %s file that is not a settings mapping: %j", (ext, text, message) => {
    expect(invalid(() => load({ config: file(ext, text) }))).toMatch(message);
  });

  it("rejects a missing file", () => {
    const path = join(dir, "does-not-exist.yaml");
    expect(invalid(() => load({ config: path }))).toMatch(new RegExp(`^cannot read config file ${path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
  });
});
