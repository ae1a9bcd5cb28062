import { describe, expect, it } from "vitest";
import { FerryError } from "../../core/errors.js";
import type { RelayTunnel } from "../../services/tunnel/relay-tunnel.js";
import { TunnelRegistry } from "../../services/tunnel/tunnel-registry.js";

// Which tunnel TunnelRegistry.pick hands a new exchange for tenant "acme", target "app", and which refusal the client
// gets for which state of the registry when none can take it. pick reads only these fields of a tunnel.

interface Shape {
  tenant?: string;
  targets?: string[];
  capacity?: number;
  probe?: boolean;
  draining?: boolean;
  closed?: boolean;
  paused?: boolean;
  inFlight?: number;
  congested?: boolean;
}
const tunnel = (s: Shape = {}): RelayTunnel =>
  ({
    info: { tenant: s.tenant ?? "acme", targets: new Set(s.targets ?? ["app"]), capacity: s.capacity ?? 10, probe: s.probe },
    draining: s.draining ?? false,
    closed: s.closed ?? false,
    paused: s.paused ?? false,
    inFlight: s.inFlight ?? 0,
    outbox: { congested: s.congested ?? false },
  }) as unknown as RelayTunnel;

const registryOf = (...tunnels: RelayTunnel[]) => {
  const registry = new TunnelRegistry();
  for (const t of tunnels) registry.add(t);
  return registry;
};

/** The refusal pick throws, as the client sees it. */
const refusal = (registry: TunnelRegistry) => {
  try {
    registry.pick("acme", "app");
  } catch (err) {
    if (!(err instanceof FerryError)) throw err;
    return { kind: err.kind, code: err.code, message: err.message, retryAfterSeconds: err.extra.retryAfterSeconds };
  }
  throw new Error("pick found a tunnel");
};

const busy = { kind: "unavailable", code: "connector_busy", message: 'every connector of target "app" is at its exchange limit', retryAfterSeconds: 1 };
const paused = { kind: "unavailable", code: "connector_paused", message: 'the connector of target "app" is paused by its admin', retryAfterSeconds: 30 };
const offline = { kind: "unavailable", code: "no_connector", message: 'no connector for target "app" is online', retryAfterSeconds: 5 };
const unknown = { kind: "not_found", code: "target_not_found", message: 'tenant "acme" has no target "app"', retryAfterSeconds: undefined };

describe("TunnelRegistry.pick", () => {
  it.each<[string, () => TunnelRegistry, object]>([
    ["no tunnel of the tenant at all: 503, it may be on its way", () => registryOf(), offline],
    ["only another tenant's tunnel serves the target", () => registryOf(tunnel({ tenant: "other" })), offline],
    ["only a probe tunnel (ferry doctor) serves it", () => registryOf(tunnel({ probe: true })), offline],
    ["the tenant is online and never served the target: 404", () => registryOf(tunnel({ targets: ["erp"] })), unknown],
    [
      "the tenant is online and served the target before: 503, not 404",
      () => {
        const r = registryOf(tunnel({ targets: ["erp"] }));
        const gone = tunnel();
        r.add(gone);
        r.remove(gone);
        return r;
      },
      offline,
    ],
    ["the one tunnel serving it is draining", () => registryOf(tunnel({ draining: true })), offline],
    ["the one tunnel serving it is closed", () => registryOf(tunnel({ closed: true })), offline],
    ["the one tunnel serving it is paused", () => registryOf(tunnel({ paused: true })), paused],
    ["one paused, one draining", () => registryOf(tunnel({ paused: true }), tunnel({ draining: true })), paused],
    ["the one tunnel serving it is at its exchange limit", () => registryOf(tunnel({ capacity: 2, inFlight: 2 })), busy],
    ["the one tunnel serving it has a congested outbox", () => registryOf(tunnel({ congested: true })), busy],
    ["one full, one paused: busy wins (retry in 1 s, not 30)", () => registryOf(tunnel({ capacity: 1, inFlight: 1 }), tunnel({ paused: true })), busy],
  ])("refuses when %s", (_, registry, expected) => {
    expect(refusal(registry())).toEqual(expected);
  });

  it("picks the least loaded tunnel that serves the target and can take an exchange", () => {
    const best = tunnel({ inFlight: 2 });
    const registry = registryOf(
      tunnel({ inFlight: 5 }),
      best,
      tunnel({ inFlight: 0, paused: true }),
      tunnel({ inFlight: 0, draining: true }),
      tunnel({ inFlight: 0, congested: true }),
      tunnel({ inFlight: 1, capacity: 1 }),
      tunnel({ inFlight: 0, targets: ["erp"] }),
    );
    for (let i = 0; i < 20; i++) expect(registry.pick("acme", "app")).toBe(best);
  });

  it("shares ties between the equally loaded tunnels", () => {
    const a = tunnel({ inFlight: 1 });
    const b = tunnel({ inFlight: 1 });
    const registry = registryOf(a, b, tunnel({ inFlight: 3 }));
    const picked = new Set<RelayTunnel>();
    // Chance that 200 fair draws all land on one of the two: 2 * 2^-200.
    for (let i = 0; i < 200; i++) picked.add(registry.pick("acme", "app"));
    expect(picked).toEqual(new Set([a, b]));
  });
});
