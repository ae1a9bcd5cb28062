import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { relayCommand } from "../../clients/cli/relay-command.js";
import { RELAY_DEFAULTS, type RelayFlags, resolveRelaySettings } from "../../services/relay/relay-config.js";
import { FerryError } from "../../core/errors.js";
import { DEFAULT_LIMITS } from "../../services/limits/limits.js";

const dir = mkdtempSync(join(tmpdir(), "ferry-relay-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileSeq = 0;
function file(ext: string, text: string): string {
  const path = join(dir, `config-${fileSeq++}.${ext}`);
  writeFileSync(path, text);
  return path;
}
const ca = file("pem", "ca");
const cert = file("pem", "cert");
const key = file("pem", "key");

const resolve = (flags: RelayFlags, env: NodeJS.ProcessEnv = {}) => resolveRelaySettings(flags, env);

function invalid(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FerryError);
    expect(e).toMatchObject({ kind: "invalid_argument", code: "invalid_config" });
    return (e as FerryError).message;
  }
  throw new Error("expected an invalid_argument FerryError");
}

const DEFAULTS = {
  listen: { host: "127.0.0.1", port: 8080 },
  dataDir: "./data",
  requestTimeoutMs: 100_000,
  keepaliveMs: 15_000,
  graceMs: 30_000,
  drainDelayMs: 0,
  trustedProxies: [],
  auditRetentionDays: 30,
  auditRequests: true,
  publicAdmin: true,
  console: true,
  logLevel: "info",
  limits: DEFAULT_LIMITS,
};

describe("resolveRelaySettings defaults", () => {
  it("applies today's defaults when neither flag nor file sets anything", () => {
    expect(resolve({})).toEqual(DEFAULTS);
  });

  it("serves management on the main port unless an admin port takes it, and refuses --no-public-admin alone", () => {
    expect(resolve({ adminListen: "127.0.0.1:9443", publicAdmin: false })).toMatchObject({ adminListen: { host: "127.0.0.1", port: 9443 }, publicAdmin: false });
    expect(invalid(() => resolve({ publicAdmin: false }))).toMatch(/--no-public-admin needs --admin-listen/);
    expect(invalid(() => resolve({ config: file("yaml", "publicAdmin: false\n") }))).toMatch(/publicAdmin: false needs --admin-listen/);
    expect(invalid(() => resolve({ adminListen: "nowhere" }))).toMatch(/--admin-listen/);
    expect(resolve({ console: false }).console).toBe(false);
  });

  it("takes peer links only in a cluster, on an address the other nodes can dial", () => {
    const nats = "nats://n1:4222";
    expect(resolve({ nats, peerListen: "10.0.0.5:7443" }).peerListen).toEqual({ listen: { host: "10.0.0.5", port: 7443 }, advertise: { host: "10.0.0.5" } });
    expect(resolve({ nats, peerListen: ":7443", peerAdvertise: "relay-1.internal:8443" }).peerListen).toEqual({
      listen: { host: "0.0.0.0", port: 7443 },
      advertise: { host: "relay-1.internal", port: 8443 },
    });
    expect(resolve({ nats, peerListen: "[::]:7443", peerAdvertise: "[fd00::5]" }).peerListen?.advertise).toEqual({ host: "fd00::5" });
    expect(resolve({ nats, config: file("yaml", "peerListen: 10.0.0.5:0\n") }).peerListen?.listen).toEqual({ host: "10.0.0.5", port: 0 });
    expect(resolve({ nats }).peerListen).toBeUndefined();
    expect(invalid(() => resolve({ peerListen: "10.0.0.5:7443" }))).toMatch(/--peer-listen is for a cluster: give --nats/);
    expect(invalid(() => resolve({ nats, peerListen: ":7443" }))).toMatch(/every interface: give --peer-advertise/);
    expect(invalid(() => resolve({ nats, peerAdvertise: "10.0.0.5" }))).toMatch(/--peer-advertise needs --peer-listen/);
    expect(invalid(() => resolve({ nats, peerListen: "10.0.0.5:7443", peerAdvertise: "http://x" }))).toMatch(/--peer-advertise "http:\/\/x" must be HOST or HOST:PORT/);
    expect(invalid(() => resolve({ nats, peerListen: "somewhere" }))).toMatch(/--peer-listen "somewhere" must be HOST:PORT/);
  });

  it("gives a cluster node a drain delay for its load balancer, which a flag can change", () => {
    expect(resolve({ nats: "nats://n1:4222" }).drainDelayMs).toBe(RELAY_DEFAULTS.clusterDrainDelayMs);
    expect(resolve({ nats: "nats://n1:4222", drainDelay: "250ms" }).drainDelayMs).toBe(250);
  });

  it("applies the same defaults for what a file leaves out", () => {
    expect(resolve({ config: file("yaml", "nodeId: n1\n") })).toEqual({ ...DEFAULTS, nodeId: "n1" });
    expect(resolve({ config: file("json", "{}") })).toEqual(DEFAULTS);
  });

  it("takes the admin token from FERRY_ADMIN_TOKEN (empty counts as unset)", () => {
    expect(resolve({}, { FERRY_ADMIN_TOKEN: "t".repeat(20) }).adminToken).toBe("t".repeat(20));
    expect(resolve({}, { FERRY_ADMIN_TOKEN: "" })).not.toHaveProperty("adminToken");
  });

  it("--help states every default resolveRelaySettings applies", () => {
    // Commander wraps descriptions to the terminal width.
    const help = relayCommand().helpInformation().replace(/\s+/g, " ");
    expect(help).toContain(`(default ${RELAY_DEFAULTS.listen})`);
    expect(help).toContain(`(default ${RELAY_DEFAULTS.data})`);
    expect(help).toContain(`(default ${RELAY_DEFAULTS.requestTimeoutMs / 1000}s)`);
    expect(help).toContain(`(default ${RELAY_DEFAULTS.keepaliveMs / 1000}s)`);
    expect(help).toContain(`(default ${RELAY_DEFAULTS.graceMs / 1000}s)`);
    expect(help).toContain(`(default ${RELAY_DEFAULTS.auditRetentionDays})`);
    expect(help).toContain(`(default ${RELAY_DEFAULTS.logLevel})`);
  });
});

describe("resolveRelaySettings from a file and flags", () => {
  const yaml = `
listen: 0.0.0.0:9443
data: /var/lib/ferry
tlsCert: ${cert}
tlsKey: ${key}
requestTimeout: 2m
keepalive: 500ms
grace: 45
drainDelay: 5s
trustProxy: [10.0.0.0/8, 192.168.1.1]
nodeId: relay-a
auditRetentionDays: 7
auditRequests: false
metricsListen: 127.0.0.1:9100
adminListen: 10.0.0.2:9443
publicAdmin: false
console: false
logLevel: warn
nats:
  servers: [nats://n1:4222, tls://n2:4223]
  user: ferry
  password: from-file
  tlsCa: ${ca}
  replicas: 3
`;
  const fromFile = {
    listen: { host: "0.0.0.0", port: 9443 },
    dataDir: "/var/lib/ferry",
    tlsCert: cert,
    tlsKey: key,
    requestTimeoutMs: 120_000,
    keepaliveMs: 500,
    graceMs: 45_000,
    drainDelayMs: 5_000,
    trustedProxies: ["10.0.0.0/8", "192.168.1.1"],
    nodeId: "relay-a",
    auditRetentionDays: 7,
    auditRequests: false,
    metricsListen: { host: "127.0.0.1", port: 9100 },
    adminListen: { host: "10.0.0.2", port: 9443 },
    publicAdmin: false,
    console: false,
    logLevel: "warn",
    nats: { servers: ["nats://n1:4222", "tls://n2:4223"], user: "ferry", password: "from-file", tls: { caFile: ca }, replicas: 3 },
    limits: DEFAULT_LIMITS,
  };

  it("reads every setting from YAML with friendly durations (a bare number is seconds)", () => {
    expect(resolve({ config: file("yaml", yaml) })).toEqual(fromFile);
  });

  it("reads snake_case proto names and JSON, with proto JSON durations", () => {
    const json = {
      tls_cert: cert,
      tls_key: key,
      request_timeout: "120s",
      audit_requests: false,
      nats: { servers: ["nats://n1:4222"], tls_ca: ca },
    };
    expect(resolve({ config: file("json", JSON.stringify(json)) })).toMatchObject({
      tlsCert: cert,
      requestTimeoutMs: 120_000,
      auditRequests: false,
      nats: { servers: ["nats://n1:4222"], tls: { caFile: ca } },
    });
  });

  it("lets every flag override the file", () => {
    const other = file("pem", "other");
    const s = resolve({
      config: file("yaml", yaml),
      listen: ":8443",
      data: "/srv/ferry",
      tlsCert: other,
      tlsKey: other,
      requestTimeout: "5s",
      keepalive: "1s",
      grace: "2s",
      trustProxy: ["127.0.0.1"],
      nodeId: "relay-b",
      auditRetention: "90",
      auditRequests: false,
      metricsListen: "[::1]:9200",
      logLevel: "debug",
      nats: "nats://m1:5222, nats://m2:5222",
      natsUser: "other",
      natsPassword: "flag-pw",
      natsCa: other,
      natsReplicas: "1",
    });
    expect(s).toMatchObject({
      listen: { host: "0.0.0.0", port: 8443 },
      dataDir: "/srv/ferry",
      tlsCert: other,
      requestTimeoutMs: 5000,
      keepaliveMs: 1000,
      graceMs: 2000,
      trustedProxies: ["127.0.0.1"],
      nodeId: "relay-b",
      auditRetentionDays: 90,
      metricsListen: { host: "::1", port: 9200 },
      logLevel: "debug",
      nats: { servers: ["nats://m1:5222", "nats://m2:5222"], user: "other", password: "flag-pw", tls: { caFile: other }, replicas: 1 },
    });
    // The file's user and password still apply, so a flag token clashes with them.
    expect(invalid(() => resolve({ config: file("yaml", yaml), natsToken: "tok" }))).toMatch(/^--nats-token and .*: nats\.user cannot be used together/);
  });

  it("keeps the file's auditRequests: false unless a flag is given, and true from the file too", () => {
    expect(resolve({ config: file("yaml", "auditRequests: false\n") }).auditRequests).toBe(false);
    expect(resolve({ config: file("yaml", "auditRequests: true\n") }).auditRequests).toBe(true);
    expect(resolve({ config: file("yaml", "auditRequests: true\n"), auditRequests: false }).auditRequests).toBe(false);
  });

  it("a flag's servers replace the file's list", () => {
    const path = file("yaml", "nats:\n  servers: [nats://a:1, nats://b:2]\n");
    expect(resolve({ config: path, nats: "tls://c:3" }).nats).toEqual({ servers: ["tls://c:3"] });
  });

  it("rejects unknown keys, naming the key, the file, and where it sits", () => {
    const top = file("yaml", "listen: :1\ncolour: blue\n");
    expect(invalid(() => resolve({ config: top }))).toBe(`${top}: key "colour" is unknown`);
    const nested = file("yaml", "nats:\n  servers: [nats://a:1]\n  pasword: x\n");
    expect(invalid(() => resolve({ config: nested }))).toBe(`${nested}: nats: key "pasword" is unknown`);
  });

  it("rejects a bad duration in the file, naming the field", () => {
    const path = file("yaml", "keepalive: soon\n");
    expect(invalid(() => resolve({ config: path }))).toBe(`${path}: keepalive: "soon" is not a duration (examples: 500ms, 30s, 5m, 2h)`);
  });

  it.each<[string, RelayFlags, RegExp]>([
    ["request timeout", { requestTimeout: "10 s" }, /^--request-timeout: "10 s" is not a duration/],
    ["keepalive", { keepalive: "often" }, /^--keepalive: "often" is not a duration/],
    ["grace", { grace: "-1s" }, /^--grace: "-1s" is not a duration/],
    ["zero keepalive", { keepalive: "0s" }, /^--keepalive must be more than 0$/],
    ["zero request timeout", { requestTimeout: "0" }, /^--request-timeout must be more than 0$/],
  ])("rejects a bad duration flag (%s)", (_name, flags, message) => {
    expect(invalid(() => resolve(flags))).toMatch(message);
  });

  it("reads the base domain for host routing from flag or file, lower-cased, without a trailing dot", () => {
    expect(resolve({}).baseDomain).toBeUndefined();
    expect(resolve({ baseDomain: "Relay.Example.COM." }).baseDomain).toBe("relay.example.com");
    const path = file("yaml", "baseDomain: apps.example.org\n");
    expect(resolve({ config: path }).baseDomain).toBe("apps.example.org");
    expect(resolve({ config: path, baseDomain: "other.example.org" }).baseDomain).toBe("other.example.org");
    expect(invalid(() => resolve({ config: file("yaml", "base_domain: 'x y'\n") }))).toMatch(/: baseDomain "x y" is not a domain name/);
  });

  it("rejects a zero keepalive in the file, naming the file and key", () => {
    const path = file("yaml", "keepalive: 0s\n");
    expect(invalid(() => resolve({ config: path }))).toBe(`${path}: keepalive must be more than 0`);
  });

  it.each<[string, RelayFlags, RegExp]>([
    ["listen", { listen: "8080" }, /^--listen "8080" must be HOST:PORT/],
    ["metrics listen", { metricsListen: "localhost" }, /^--metrics-listen "localhost" must be HOST:PORT/],
    ["audit retention 0", { auditRetention: "0" }, /^--audit-retention "0" is not a whole number >= 1$/],
    ["audit retention text", { auditRetention: "a week" }, /^--audit-retention "a week" is not a whole number$/],
    ["log level", { logLevel: "loud" }, /^--log-level "loud" is not one of trace, debug, info, warn, error$/],
    ["tls cert alone", { tlsCert: "c.pem" }, /^--tls-cert needs a private key: give --tls-key \(or tlsKey in the config file\)$/],
    ["tls key alone", { tlsKey: "k.pem" }, /^--tls-key needs a certificate: give --tls-cert/],
    ["base domain with a scheme", { baseDomain: "https://relay.example.com" }, /^--base-domain "https:\/\/relay\.example\.com" is not a domain name/],
    ["base domain with a port", { baseDomain: "relay.example.com:443" }, /^--base-domain "relay\.example\.com:443" is not a domain name/],
    ["base domain with a wildcard", { baseDomain: "*.example.com" }, /^--base-domain "\*\.example\.com" is not a domain name/],
    ["single-label base domain", { baseDomain: "localhost" }, /^--base-domain "localhost" is not a domain name like relay\.example\.com/],
  ])("rejects a bad flag (%s)", (_name, flags, message) => {
    expect(invalid(() => resolve(flags))).toMatch(message);
  });

  it("names the file and key when a bad value comes from the file", () => {
    const listen = file("yaml", "listen: nowhere\n");
    expect(invalid(() => resolve({ config: listen }))).toBe(`${listen}: listen "nowhere" must be HOST:PORT, e.g. 127.0.0.1:8080 or :8080`);
    const level = file("yaml", "logLevel: fatal\n");
    expect(invalid(() => resolve({ config: level }))).toMatch(new RegExp(`^${escape(level)}: logLevel "fatal" is not one of`));
    const tls = file("yaml", "tlsKey: k.pem\n");
    expect(invalid(() => resolve({ config: tls }))).toBe(`${tls}: tlsKey needs a certificate: give --tls-cert (or tlsCert in the config file)`);
  });
});

describe("resolveRelaySettings limits", () => {
  it("reads limits from the file, with sizes and durations written for people", () => {
    const config = file("yaml", "limits:\n  maxConnectionsPerIp: 64\n  tenantBufferBytes: 128MiB\n  headersTimeout: 5s\n  clientStreamWindowBytes: 1MiB\n");
    const { limits } = resolve({ config });
    expect(limits).toEqual({
      ...DEFAULT_LIMITS,
      maxConnectionsPerIp: 64,
      tenantBufferBytes: 128 * 1024 * 1024,
      headersTimeoutMs: 5_000,
      clientStreamWindow: 1024 * 1024,
    });
  });

  it("lays each --limit over the file's limits", () => {
    const config = file("yaml", "limits:\n  maxConnectionsPerIp: 64\n  maxTunnelsPerKey: 4\n");
    const { limits } = resolve({ config, limit: ["maxConnectionsPerIp=1000", "authBackoffMax=2m", "auditMaxBytes=1GiB"] });
    expect(limits).toMatchObject({ maxConnectionsPerIp: 1000, maxTunnelsPerKey: 4, authBackoffMaxMs: 120_000, auditMaxBytes: 1024 ** 3 });
  });

  it("names the bad limit, whether from a flag or the file", () => {
    expect(invalid(() => resolve({ limit: ["maxConnectionsPerIP=5"] }))).toMatch(/--limit: key "maxConnectionsPerIP" is unknown.*maxConnectionsPerIp/);
    expect(invalid(() => resolve({ limit: ["maxConnections"] }))).toMatch(/must be NAME=VALUE/);
    expect(invalid(() => resolve({ limit: ["tenantBufferBytes=lots"] }))).toMatch(/--limit\.tenantBufferBytes: "lots" is not a size/);
    expect(invalid(() => resolve({ limit: ["clientSharePercent=150"] }))).toMatch(/limits\.clientSharePercent is a percentage/);
    expect(invalid(() => resolve({ limit: ["maxConnections=10", "maxConnectionsPerIp=20"] }))).toMatch(/maxConnectionsPerIp must not exceed maxConnections/);
    expect(invalid(() => resolve({ limit: ["clientStreamWindowBytes=1000"] }))).toMatch(/clientStreamWindowBytes must be between 65535/);
    expect(invalid(() => resolve({ config: file("yaml", "limits:\n  maxStreams: 5\n") }))).toMatch(/limits: key "maxStreams" is unknown/);
  });
});

describe("resolveRelaySettings NATS options", () => {
  it("has no nats options without servers: a single node", () => {
    expect(resolve({})).not.toHaveProperty("nats");
    // The secrets' variables alone do not make a cluster, nor an error.
    expect(resolve({}, { FERRY_NATS_PASSWORD: "pw", FERRY_NATS_TOKEN: "tok" })).not.toHaveProperty("nats");
  });

  it("builds NatsOptions from flags", () => {
    const s = resolve({
      nats: "nats://10.0.0.1:4222,tls://nats.example:4443/,nats://[::1]:4222",
      natsUser: "ferry",
      natsPassword: "secret",
      natsCa: ca,
      natsCert: cert,
      natsKey: key,
      natsReplicas: "5",
    });
    expect(s.nats).toEqual({
      servers: ["nats://10.0.0.1:4222", "tls://nats.example:4443", "nats://[::1]:4222"],
      user: "ferry",
      password: "secret",
      tls: { caFile: ca, certFile: cert, keyFile: key },
      replicas: 5,
    });
  });

  it("takes a token", () => {
    expect(resolve({ nats: "nats://a:1", natsToken: "tok" }).nats).toEqual({ servers: ["nats://a:1"], token: "tok" });
  });

  it("takes the password and token from the environment after flag and file", () => {
    const env = { FERRY_NATS_PASSWORD: "env-pw", FERRY_NATS_TOKEN: "env-tok" };
    expect(resolve({ nats: "nats://a:1", natsUser: "u" }, { FERRY_NATS_PASSWORD: "env-pw" }).nats).toMatchObject({ user: "u", password: "env-pw" });
    expect(resolve({ nats: "nats://a:1", natsUser: "u", natsPassword: "flag-pw" }, { FERRY_NATS_PASSWORD: "env-pw" }).nats?.password).toBe("flag-pw");
    const withPassword = file("yaml", "nats:\n  servers: [nats://a:1]\n  user: u\n  password: file-pw\n");
    expect(resolve({ config: withPassword }, { FERRY_NATS_PASSWORD: "env-pw" }).nats?.password).toBe("file-pw");
    expect(resolve({ nats: "nats://a:1" }, { FERRY_NATS_TOKEN: "env-tok" }).nats).toEqual({ servers: ["nats://a:1"], token: "env-tok" });
    expect(resolve({ nats: "nats://a:1", natsToken: "flag-tok" }, env).nats?.token).toBe("flag-tok");
    expect(invalid(() => resolve({ nats: "nats://a:1", natsUser: "u" }, { FERRY_NATS_PASSWORD: "" }))).toMatch(/needs a password/);
    // Each variable only fills a gap: no token beside a user, no password beside a token.
    expect(resolve({ nats: "nats://a:1", natsUser: "u", natsPassword: "p" }, env).nats).toEqual({ servers: ["nats://a:1"], user: "u", password: "p" });
    expect(resolve({ nats: "nats://a:1", natsUser: "u" }, env).nats).toEqual({ servers: ["nats://a:1"], user: "u", password: "env-pw" });
    expect(resolve({ nats: "nats://a:1" }, env).nats).toEqual({ servers: ["nats://a:1"], token: "env-tok" });
  });

  it.each([
    ["http://a:4222", /^--nats entry 1 "http:\/\/a:4222" must start with nats:\/\/ or tls:\/\/$/],
    ["ws://a:4222", /must start with nats:\/\/ or tls:\/\//],
    ["wss://a:443", /must start with nats:\/\/ or tls:\/\//],
    ["nats://a", /^--nats entry 1 "nats:\/\/a" needs a host and a port, e.g. nats:\/\/10\.0\.0\.5:4222$/],
    ["nats://:4222", /is not a URL/],
    ["nats://a:0", /needs a host and a port/],
    ["a:4222", /must start with nats:\/\/ or tls:\/\//],
    ["not a url", /^--nats entry 1 "not a url" is not a URL: give nats:\/\/HOST:PORT or tls:\/\/HOST:PORT$/],
    ["nats://a:99999", /is not a URL/],
    ["nats://a:4222/path", /must not have a path, query or fragment/],
    ["nats://a:4222?x=1", /must not have a path, query or fragment/],
    ["nats://a:1,", /^--nats entry 2 "" is not a URL/],
    ["nats://a:1,,nats://b:2", /^--nats entry 2 "" is not a URL/],
  ])("rejects --nats %j", (servers, message) => {
    expect(invalid(() => resolve({ nats: servers }))).toMatch(message);
  });

  it("rejects credentials in a server URL without echoing them", () => {
    const message = invalid(() => resolve({ nats: "nats://me:hunter2@a:4222" }));
    expect(message).toBe("--nats entry 1 must not carry credentials: use --nats-user/--nats-password or --nats-token");
    expect(message).not.toContain("hunter2");
  });

  it("names the file entry for a bad server in the file", () => {
    const path = file("yaml", "nats:\n  servers: [nats://a:1, http://b:2]\n");
    expect(invalid(() => resolve({ config: path }))).toBe(`${path}: nats.servers[1] "http://b:2" must start with nats:// or tls://`);
  });

  it.each<[string, RelayFlags, NodeJS.ProcessEnv, RegExp]>([
    ["user without password", { natsUser: "u" }, {}, /^--nats-user needs a password: give --nats-password or FERRY_NATS_PASSWORD/],
    ["password without user", { natsPassword: "p" }, {}, /^--nats-password needs a user: give --nats-user/],
    ["env password without user", {}, { FERRY_NATS_PASSWORD: "p" }, /^FERRY_NATS_PASSWORD needs a user/],
    ["token with user", { natsToken: "t", natsUser: "u", natsPassword: "p" }, {}, /^--nats-token and --nats-user cannot be used together/],
    ["cert without key", { natsCert: cert }, {}, /^--nats-cert needs a private key: give --nats-key/],
    ["key without cert", { natsKey: key }, {}, /^--nats-key needs a certificate: give --nats-cert/],
    ["missing CA file", { natsCa: join(dir, "nope.pem") }, {}, /^--nats-ca .*nope\.pem: no such file$/],
    ["missing cert file", { natsCert: join(dir, "nope.pem"), natsKey: key }, {}, /^--nats-cert .*nope\.pem: no such file$/],
    ["missing key file", { natsCert: cert, natsKey: join(dir, "nope.pem") }, {}, /^--nats-key .*nope\.pem: no such file$/],
    ["a directory as CA", { natsCa: dir }, {}, /^--nats-ca .* is not a file$/],
    ["replicas 0", { natsReplicas: "0" }, {}, /^--nats-replicas must be between 1 and 5 \(got 0\)$/],
    ["replicas 6", { natsReplicas: "6" }, {}, /^--nats-replicas must be between 1 and 5 \(got 6\)$/],
    ["replicas not a number", { natsReplicas: "three" }, {}, /^--nats-replicas "three" is not a whole number$/],
  ])("rejects %s", (_name, flags, env, message) => {
    expect(invalid(() => resolve({ nats: "nats://a:4222", ...flags }, env))).toMatch(message);
  });

  it("never puts a password or token into an error", () => {
    for (const flags of [{ natsPassword: "hunter2" }, { natsToken: "hunter2", natsUser: "u", natsPassword: "hunter2" }]) {
      expect(invalid(() => resolve({ nats: "nats://a:4222", ...flags }))).not.toContain("hunter2");
    }
  });

  it("rejects NATS settings without servers, naming the setting", () => {
    expect(invalid(() => resolve({ natsUser: "u", natsPassword: "p" }))).toBe(
      "--nats-user needs NATS servers: give --nats URLS (or nats.servers in the config file)",
    );
    expect(invalid(() => resolve({ natsReplicas: "3" }))).toMatch(/^--nats-replicas needs NATS servers/);
    const path = file("yaml", "nats:\n  token: t\n");
    expect(invalid(() => resolve({ config: path }))).toBe(`${path}: nats.token needs NATS servers: give --nats URLS (or nats.servers in the config file)`);
  });

  it("names the file and key for NATS auth mistakes in the file", () => {
    const path = file("yaml", "nats:\n  servers: [nats://a:1]\n  user: u\n");
    expect(invalid(() => resolve({ config: path }))).toMatch(new RegExp(`^${escape(path)}: nats\\.user needs a password`));
    const replicas = file("yaml", "nats:\n  servers: [nats://a:1]\n  replicas: 7\n");
    expect(invalid(() => resolve({ config: replicas }))).toBe(`${replicas}: nats.replicas must be between 1 and 5 (got 7)`);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
