import { setFlagsFromString } from "node:v8";

/** After each full collection, the old generation's limit is four times what it kept. */
export const HEAP_GROWING_PERCENT = 300;

/**
 * Keeps V8 out of a loop of full collections while bytes stream through.
 *
 * V8 starts marking the old generation once what is left below its limit is
 * less than the young generation's size, and it counts the Buffer memory
 * allocated since the last full collection against that limit. A relay or
 * connector has a small heap (~13 MB live) and, streaming, tens of MB of
 * short-lived Buffers between two scavenges: with V8's own growing factor the
 * limit sat ~23 MB above the live size, each full collection freed next to
 * nothing, and the next one began at once. In a 200 MB transfer a connector
 * ran 100-280 of them and a relay sometimes as many (which mode a process
 * lands in depends on when its first ones ran): CPU per byte doubled, and
 * bulk figures swung 2x between benchmark runs. With the limit at four times
 * the live size they run 2-4 times (at 2.5x and 3x the loop stays). The price:
 * a node with a larger live heap peaks higher under small requests (+45 MB on
 * the egress node of the benchmark's cluster).
 *
 * V8 reads this flag at each new limit, so it can be set here, after start;
 * --initial-old-space-size (a floor instead) is read only at start and is not
 * allowed in NODE_OPTIONS. An operator's own --heap-growing-percent wins.
 * Returns the flag it set, if any.
 */
export function tuneHeapForStreaming(execArgv: readonly string[] = process.execArgv): string | undefined {
  if (execArgv.some((a) => /^--heap[-_]growing[-_]percent\b/.test(a))) return undefined;
  const flag = `--heap-growing-percent=${HEAP_GROWING_PERCENT}`;
  setFlagsFromString(flag);
  return flag;
}
