import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuditInput, AuditLog } from "../../services/audit/audit-log.js";
import { createRefusalLimiter } from "../../services/audit/refusal-limiter.js";
import { bearer } from "../../services/auth/bearer.js";
import { createSourceBackoff } from "../../services/auth/source-backoff.js";
import { GrpcStatus } from "../../services/http/grpc-status.js";
import { DEFAULT_LIMITS } from "../../services/limits/limits.js";
import { Catalog } from "../../services/state/catalog.js";
import { openFileStore } from "../../services/state/file-store.js";
import type { KvStore } from "../../services/state/kv-store.js";
import { authenticate, type ConnectorAuthDeps } from "../../services/tunnel/connector-auth.js";
import type { ConnectorCert } from "../../services/tunnel/connector-cert.js";
import { GrpcError } from "../../services/tunnel/grpc-call.js";
import { tempDir } from "../helpers/processes.js";

// Who a tunnel belongs to, for every mix of key and client certificate: the outcome, the status a refused
// connector gets, what is audited, and whether the failure counts against the source's back-off.

const SOURCE = "203.0.113.7";
const notAfter = new Date(Date.now() + 86_400_000);
const certFor = (tenant: string, extra: Partial<Extract<ConnectorCert, { kind: "valid" }>> = {}): ConnectorCert => ({
  kind: "valid",
  tenant,
  name: `${tenant}.connectors`,
  serial: "A1B",
  notAfter,
  ...extra,
});
const untrusted: ConnectorCert = { kind: "untrusted", reason: "certificate has expired", subject: "CN=acme" };

let store: KvStore;
let catalog: Catalog;
const secrets: Record<"acme" | "beta" | "revoked" | "off", string> = { acme: "", beta: "", revoked: "", off: "" };
const keyIds: Record<string, string> = {};

beforeAll(async () => {
  store = await openFileStore(tempDir());
  catalog = new Catalog(store);
  await catalog.createTenant("acme", { deniedCertificateSerials: ["0A:FF"] });
  await catalog.createTenant("beta");
  await catalog.createTenant("off", { disabled: true });
  for (const [name, tenant] of [["acme", "acme"], ["beta", "beta"], ["revoked", "acme"], ["off", "off"]] as const) {
    const { record, secret } = await catalog.createKey(tenant);
    secrets[name] = secret;
    keyIds[name] = record.keyId;
  }
  await catalog.revokeKey("acme", keyIds.revoked!);
});
afterAll(() => store.close());

function deps() {
  const events: AuditInput[] = [];
  const audit = { record: (e: AuditInput) => events.push(e) } as unknown as AuditLog;
  const backoff = createSourceBackoff({ ...DEFAULT_LIMITS, authFailuresBeforeBackoff: 1 });
  const d: ConnectorAuthDeps = { catalog, audit, refusals: createRefusalLimiter(), backoff };
  return { d, events, backoff };
}

type Secret = keyof typeof secrets | "none" | "garbage";
const secretOf = (s: Secret) => (s === "none" ? "" : s === "garbage" ? "fck_not-a-real-key" : secrets[s]);

describe("tunnel authentication outcomes", () => {
  const refused: {
    name: string;
    secret: Secret;
    cert: ConnectorCert;
    status: number;
    message: RegExp;
    reason: string;
    /** A wrong credential (rather than a valid one that may not connect) makes the source wait. */
    countsAgainstSource: boolean;
  }[] = [
    { name: "no key, no certificate", secret: "none", cert: { kind: "none" }, status: GrpcStatus.UNAUTHENTICATED, message: /^connector key missing: send authorization: Bearer <key>$/, reason: "missing", countsAgainstSource: true },
    { name: "a key nobody issued", secret: "garbage", cert: { kind: "none" }, status: GrpcStatus.UNAUTHENTICATED, message: /^connector key is not valid$/, reason: "malformed", countsAgainstSource: true },
    { name: "a revoked key", secret: "revoked", cert: { kind: "none" }, status: GrpcStatus.UNAUTHENTICATED, message: /^connector key was revoked$/, reason: "revoked", countsAgainstSource: true },
    { name: "a disabled tenant's key", secret: "off", cert: { kind: "none" }, status: GrpcStatus.PERMISSION_DENIED, message: /^tenant "off" is disabled$/, reason: "tenant disabled", countsAgainstSource: false },
    { name: "an untrusted certificate and no key", secret: "none", cert: untrusted, status: GrpcStatus.UNAUTHENTICATED, message: /^client certificate not accepted \(certificate has expired\) and no connector key sent$/, reason: "untrusted certificate", countsAgainstSource: true },
    { name: "a denied serial and no key", secret: "none", cert: certFor("acme", { serial: "AFF" }), status: GrpcStatus.UNAUTHENTICATED, message: /its serial is on the tenant's deny list/, reason: "certificate denied", countsAgainstSource: true },
    { name: "certificate and key of different tenants", secret: "beta", cert: certFor("acme"), status: GrpcStatus.UNAUTHENTICATED, message: /names tenant "acme" but the connector key is another tenant's/, reason: "certificate and key name different tenants", countsAgainstSource: false },
    { name: "a certificate for a tenant that does not exist", secret: "none", cert: certFor("gone"), status: GrpcStatus.UNAUTHENTICATED, message: /names tenant "gone", which does not exist/, reason: "unknown tenant", countsAgainstSource: false },
    { name: "a certificate for a disabled tenant", secret: "none", cert: certFor("off"), status: GrpcStatus.PERMISSION_DENIED, message: /^tenant "off" is disabled$/, reason: "tenant disabled", countsAgainstSource: false },
    { name: "a valid certificate and a wrong key", secret: "garbage", cert: certFor("acme"), status: GrpcStatus.UNAUTHENTICATED, message: /^connector key is not valid$/, reason: "malformed", countsAgainstSource: true },
  ];
  for (const row of refused) {
    it(`refuses ${row.name}`, () => {
      const { d, events, backoff } = deps();
      let err: unknown;
      try {
        authenticate(d, secretOf(row.secret), row.cert, SOURCE);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(GrpcError);
      expect((err as GrpcError).status).toBe(row.status);
      expect((err as GrpcError).message).toMatch(row.message);
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ action: "connector.refused", details: { reason: row.reason, remoteAddress: SOURCE } });
      // Secrets never reach the audit.
      expect(JSON.stringify(events[0])).not.toContain(secretOf(row.secret) || "\u0000");
      expect(backoff.waitMs(SOURCE) > 0).toBe(row.countsAgainstSource);
    });
  }

  const admitted: { name: string; secret: Secret; cert: ConnectorCert; expect: Record<string, unknown> }[] = [
    { name: "a key", secret: "acme", cert: { kind: "none" }, expect: { tenant: "acme", auth: "key", actor: `connector:KEY(acme)`, principal: `key:KEY(acme)` } },
    // An untrusted certificate counts as absent, so a key still gets in.
    { name: "a key beside an untrusted certificate", secret: "acme", cert: untrusted, expect: { tenant: "acme", auth: "key" } },
    { name: "a key beside a denied serial", secret: "acme", cert: certFor("acme", { serial: "AFF" }), expect: { tenant: "acme", auth: "key" } },
    { name: "a certificate alone", secret: "none", cert: certFor("acme", { connectorId: "plant-1" }), expect: { tenant: "acme", auth: "certificate", keyId: "", actor: "connector-cert:acme.connectors", principal: "cert:acme.connectors", certificate: "acme.connectors", serial: "A1B", connectorId: "plant-1", certificateExpires: notAfter } },
    { name: "a certificate and a key of its tenant", secret: "acme", cert: certFor("acme"), expect: { tenant: "acme", auth: "certificate+key", keyId: "KEY(acme)", actor: "connector:KEY(acme)", principal: "key:KEY(acme)", certificate: "acme.connectors" } },
  ];
  for (const row of admitted) {
    it(`admits ${row.name}`, () => {
      const { d, events } = deps();
      const key = authenticate(d, secretOf(row.secret), row.cert, SOURCE);
      const want = JSON.parse(JSON.stringify(row.expect).replaceAll("KEY(acme)", keyIds.acme!)) as Record<string, unknown>;
      if (row.expect.certificateExpires) want.certificateExpires = row.expect.certificateExpires;
      expect(key).toMatchObject(want);
      if (row.cert.kind !== "valid" || row.cert.serial === "AFF") expect(key.certificate).toBeUndefined();
      expect(events).toEqual([]);
    });
  }
});

describe("bearer", () => {
  it.each([
    [undefined, ""],
    ["", ""],
    ["Bearer abc", "abc"],
    ["bearer   abc  ", "abc"],
    ["BEARER abc", "abc"],
    ["Basic abc", ""],
    ["Bearerabc", ""],
  ])("%j -> %j", (header, secret) => {
    expect(bearer(header)).toBe(secret);
  });
});
