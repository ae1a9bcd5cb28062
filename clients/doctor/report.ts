/** One check of `ferry doctor`: what was tried, whether it passed, how long it took, and what to do if not. */
export interface Step {
  name: string;
  ok: boolean;
  ms: number;
  /** What was found (passed) or what went wrong (failed). */
  detail: string;
  /** One line telling the user what to do about a failure. */
  fix?: string;
  /** Passed, but with something the user should know (a certificate expiring soon). */
  warnings?: string[];
}

export interface Report {
  ok: boolean;
  steps: Step[];
}

/** A failure a check reports: its detail and the fix to suggest. */
export class StepFailure extends Error {
  constructor(
    message: string,
    readonly fix: string,
  ) {
    super(message);
  }
}

/**
 * Runs checks in order and records each as a Step. A check returns its detail
 * (and optional warnings) or throws; a StepFailure carries its own fix, any
 * other error gets `fallbackFix`. After a failure the remaining checks depend
 * on it, so the caller stops.
 */
export function createRecorder() {
  const steps: Step[] = [];
  return {
    steps,
    async run<T>(
      name: string,
      check: () => Promise<{ detail: string; value: T; warnings?: string[] }>,
      fallbackFix: string,
    ): Promise<T | undefined> {
      const started = performance.now();
      try {
        const { detail, value, warnings } = await check();
        steps.push({ name, ok: true, ms: elapsed(started), detail, ...(warnings?.length ? { warnings } : {}) });
        return value;
      } catch (err) {
        const fix = err instanceof StepFailure ? err.fix : fallbackFix;
        steps.push({ name, ok: false, ms: elapsed(started), detail: (err as Error).message, fix });
        return undefined;
      }
    },
  };
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 10) / 10;
}

/** The report as people read it: ✔/✘ per step with its time, warnings and fixes indented. */
export function formatReport(report: Report): string {
  const lines: string[] = [];
  const width = Math.max(...report.steps.map((s) => s.name.length));
  for (const s of report.steps) {
    lines.push(`${s.ok ? "✔" : "✘"} ${s.name.padEnd(width)}  ${s.detail}  (${s.ms} ms)`);
    for (const w of s.warnings ?? []) lines.push(`  ! ${w}`);
    if (s.fix) lines.push(`  → ${s.fix}`);
  }
  lines.push(report.ok ? "\nAll checks passed." : `\n${report.steps.filter((s) => !s.ok).length} check(s) failed.`);
  return lines.join("\n");
}
