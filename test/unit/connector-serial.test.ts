import { describe, expect, it } from "vitest";
import { serialDenied } from "../../services/tunnel/connector-cert.js";

describe("denied certificate serials", () => {
  it("match a deny list in any spelling (a stored record is input too), and never an empty serial", () => {
    expect(serialDenied(["0a:1b:2c"], "A1B2C")).toBe(true);
    expect(serialDenied(["A1B2C"], "A1B2C")).toBe(true);
    expect(serialDenied(["A1B2C"], "A1B2D")).toBe(false);
    expect(serialDenied(["", "zz"], "")).toBe(false);
    expect(serialDenied(["not hex"], "A1B2C")).toBe(false);
    expect(serialDenied(undefined, "A1B2C")).toBe(false);
  });
});
