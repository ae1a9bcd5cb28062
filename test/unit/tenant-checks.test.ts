import type { IncomingHttpHeaders } from "node:http";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { type TenantRecord, TenantRecordSchema } from "../../gen/ferry/state/v1/state_pb.js";
import { HTTP_STATUS } from "../../core/errors.js";
import { bodyTooLarge, tenantRefusal } from "../../services/gateway/tenant-checks.js";

const acme = (settings: MessageInitShape<typeof TenantRecordSchema> = {}) => create(TenantRecordSchema, { name: "acme", ...settings });
/** A fetch made by a page of the relay's origin, whose Referer names `tenant`'s pages. */
const pageOf = (tenant: string): IncomingHttpHeaders => ({ "sec-fetch-site": "same-origin", referer: `https://relay.example/relay/${tenant}/web/` });

interface Row {
  name: string;
  tenant: TenantRecord;
  target?: string;
  headers?: IncomingHttpHeaders;
  hostRouted?: boolean;
  /** `status code: message`, or "taken". */
  want: string;
}

const rows: Row[] = [
  { name: "an enabled tenant without limits", tenant: acme(), want: "taken" },
  { name: "a disabled tenant", tenant: acme({ disabled: true }), want: `403 tenant_disabled: tenant "acme" is disabled` },
  {
    name: "a disabled tenant, before its targets",
    tenant: acme({ disabled: true, allowedTargets: ["api"] }),
    want: `403 tenant_disabled: tenant "acme" is disabled`,
  },
  { name: "a target on the allow list", tenant: acme({ allowedTargets: ["api", "web"] }), want: "taken" },
  {
    name: "a target off the allow list",
    tenant: acme({ allowedTargets: ["api"] }),
    want: `403 target_not_allowed: tenant "acme" does not allow target "web"`,
  },
  {
    name: "a target off the allow list, before the caller's origin",
    tenant: acme({ allowedTargets: ["api"] }),
    headers: pageOf("other"),
    want: `403 target_not_allowed: tenant "acme" does not allow target "web"`,
  },
  {
    name: "another tenant's page, path-routed",
    tenant: acme(),
    headers: pageOf("other"),
    want: `403 cross_tenant_request: a page outside /relay/acme/ may not call tenant "acme" from this origin; browser apps use host routing`,
  },
  {
    name: "another tenant's page, before the body's size",
    tenant: acme({ maxRequestBodyBytes: 10n }),
    headers: { ...pageOf("other"), "content-length": "11" },
    want: `403 cross_tenant_request: a page outside /relay/acme/ may not call tenant "acme" from this origin; browser apps use host routing`,
  },
  { name: "another tenant's page, host-routed (its own origin)", tenant: acme(), headers: pageOf("other"), hostRouted: true, want: "taken" },
  { name: "the tenant's own page", tenant: acme(), headers: pageOf("acme"), want: "taken" },
  { name: "a declared body at the limit", tenant: acme({ maxRequestBodyBytes: 100n }), headers: { "content-length": "100" }, want: "taken" },
  {
    name: "a declared body over the limit",
    tenant: acme({ maxRequestBodyBytes: 100n }),
    headers: { "content-length": "101" },
    want: "413 body_too_large: the request body is larger than 100 bytes, the tenant's limit",
  },
  {
    name: "a declared body past Number's range",
    tenant: acme({ maxRequestBodyBytes: 100n }),
    headers: { "content-length": "99999999999999999999999" },
    want: "413 body_too_large: the request body is larger than 100 bytes, the tenant's limit",
  },
  { name: "a body of any size without a limit", tenant: acme(), headers: { "content-length": "99999999999999999999999" }, want: "taken" },
  // Not a length the relay can compare: the body is counted as it arrives instead.
  { name: "a Content-Length that is not digits", tenant: acme({ maxRequestBodyBytes: 100n }), headers: { "content-length": "1e9" }, want: "taken" },
  { name: "a body without Content-Length", tenant: acme({ maxRequestBodyBytes: 100n }), headers: { "transfer-encoding": "chunked" }, want: "taken" },
];

describe("the gateway's tenant checks", () => {
  it.each(rows)("$name: $want", ({ tenant, target = "web", headers = {}, hostRouted = false, want }) => {
    const refusal = tenantRefusal(tenant, { tenant: "acme", target }, headers, hostRouted);
    expect(refusal ? `${HTTP_STATUS[refusal.kind]} ${refusal.code}: ${refusal.message}` : "taken").toBe(want);
  });

  it("refuses a body found too large mid-stream with the same 413 as a declared one", () => {
    const declared = tenantRefusal(acme({ maxRequestBodyBytes: 7n }), { tenant: "acme", target: "web" }, { "content-length": "8" }, false);
    expect(bodyTooLarge(7n)).toMatchObject({ kind: declared!.kind, code: declared!.code, message: declared!.message });
  });
});
