import { describe, expect, it } from "vitest";
import { nextRelay } from "../../clients/connector/tunnel-slot.js";

// Where a slot goes when its relay fails or drains: the least loaded other relay, nearest after its own.
describe("nextRelay", () => {
  it.each([
    // slotRelay (relay of each slot), slot that moves, relays, expected
    [[0], 0, 1, 0], // one relay: nowhere else to go
    [[0], 0, 2, 1],
    [[1], 0, 2, 0], // wraps around
    [[0, 1], 0, 2, 1], // the other relay, even if loaded: never stay
    [[0, 1, 2], 0, 3, 1], // equal loads: nearest after
    [[2, 0, 1], 0, 3, 0], // from 2, nearest after wraps to 0
    [[0, 1, 1, 2], 0, 3, 2], // relay 1 has two slots, relay 2 one
    [[0, 1, 2, 2], 0, 3, 1],
    [[0, 0, 0, 0], 0, 3, 1], // rolling restart: the slots on relay 0 spread...
    [[1, 0, 0, 0], 1, 3, 2], // ...the next one goes where nobody is yet
    [[1, 2, 0, 0], 2, 3, 1], // ties between 1 and 2 (one slot each): nearest after 0
    [[1, 1, 1, 0], 3, 3, 2], // the loaded relay is passed over for an empty one farther on
  ])("%j slot %d of %d relays -> %d", (slotRelay, slot, relays, expected) => {
    expect(nextRelay(slotRelay, slot, relays)).toBe(expected);
  });

  it("does not count the moving slot itself", () => {
    // Slot 1 leaves relay 1; relay 1 then has no other slot, but a slot never stays on the relay it leaves.
    expect(nextRelay([0, 1, 2], 1, 3)).toBe(2);
    // Slot 0 leaves relay 0: relay 1 and 2 each have one other slot, so the nearest wins.
    expect(nextRelay([0, 1, 2, 0], 0, 3)).toBe(1);
  });
});
