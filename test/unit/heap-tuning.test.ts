import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { HEAP_GROWING_PERCENT, tuneHeapForStreaming } from "../../clients/cli/heap-tuning.js";

describe("tuneHeapForStreaming", () => {
  it("sets V8's heap growing factor unless the operator chose one", () => {
    expect(tuneHeapForStreaming([])).toBe(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
    expect(tuneHeapForStreaming(["--inspect"])).toBe(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
    expect(tuneHeapForStreaming(["--heap-growing-percent=50"])).toBeUndefined();
    expect(tuneHeapForStreaming(["--heap_growing_percent=50"])).toBeUndefined();
  });

  it("names a flag this node knows (setFlagsFromString ignores unknown ones in silence)", () => {
    const flag = tuneHeapForStreaming([])!;
    // On the command line an unknown V8 flag is an error: a renamed flag fails here, not quietly in production.
    expect(() => execFileSync(process.execPath, [flag, "-e", "0"], { stdio: "pipe" })).not.toThrow();
    expect(() => execFileSync(process.execPath, ["--heap-growing-percent-renamed=1", "-e", "0"], { stdio: "pipe" })).toThrow(/bad option/);
  });
});
