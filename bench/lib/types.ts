import type { Protection } from "../protection.js";
import type { Setup, SetupName } from "../setups.js";

export interface RunOptions {
  /** Short runs, small sizes: a smoke test of the whole suite in under two minutes. */
  quick: boolean;
}

/** One scenario's figures for one setup: numbers, or a note instead of a number. */
export type Figures = Record<string, number | string>;

/** One timed run of a closed-loop load: what run-protected.ts compares. */
export interface TimedRun {
  rps: number;
  /** Requests completed in the run: CPU per request divides by these. */
  requests: number;
  /** Requests refused or failed: behind a policy a refusal is quick and cheap, and would flatter the check. */
  errors: number;
}

export interface Scenario {
  id: string;
  title: string;
  /** One sentence on what is measured and how, for the report. */
  method(o: RunOptions): string;
  /** Rough seconds per setup, for the progress line. */
  seconds(o: RunOptions): number;
  /** Setups this scenario applies to (default: all). */
  only?: SetupName[];
  /** Setups this scenario does not measure, with the reason the report prints in their row. */
  skip?: Partial<Record<SetupName, string>>;
  /** The figures the report shows per setup; `ratios: false` where a ratio to the baselines means nothing. */
  headline: { key: string; unit: string; higherIsBetter: boolean; ratios?: boolean }[];
  /**
   * The Ferry setups (PROTECTABLE) measured also behind each of these access policies, each a row of its own
   * right after the unprotected one ("ferry-1+jwt"): what the relay's check costs. One setup carries them all,
   * its policy switched between timed runs (run-protected.ts), so both sides of a ratio share the machine's mood.
   */
  protections?: Protection[];
  /** With `protections`: a warm-up and one timed run of the load, which run-protected.ts repeats for each policy, round by round. */
  warmUp?(setup: Setup, o: RunOptions): Promise<unknown>;
  runOnce?(setup: Setup, o: RunOptions): Promise<TimedRun>;
  /** With `protections`: how many rounds (each policy once per round). */
  rounds?(o: RunOptions): number;
  /** What the setups forward to: the HTTP/1.1 target (default) or the gRPC target (h2c). */
  target?: "http" | "grpc";
  /** The scenario starts what it measures itself (no setup is started for it). */
  standalone?: boolean;
  /** `setup` is undefined for a standalone scenario, which starts what `name` stands for itself. */
  run(setup: Setup | undefined, o: RunOptions, log: (line: string) => void, name: SetupName): Promise<Figures>;
}
