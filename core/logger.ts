import { createRequire } from "node:module";
import { pino, type Logger, type LevelWithSilent } from "pino";

export type { Logger };

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;

export interface LoggerOptions {
  level?: string;
  /** Force pretty output (default: when stdout is a TTY) or JSON lines. */
  pretty?: boolean;
  name?: string;
}

/**
 * JSON lines on stdout by default (machines read them), human output when a
 * person is watching. Secrets never reach a log line: fields that may carry
 * them are censored wherever they appear.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = (options.level ?? process.env.FERRY_LOG_LEVEL ?? "info") as LevelWithSilent;
  if (!LOG_LEVELS.includes(level)) {
    throw new Error(`log level "${level}" is not one of ${LOG_LEVELS.join(", ")}`);
  }
  const usePretty = options.pretty ?? (process.stdout.isTTY === true && process.env.FERRY_LOG_FORMAT !== "json");
  const config = {
    level,
    name: options.name,
    redact: {
      paths: ["secret", "key", "token", "authorization", "*.secret", "*.key", "*.token", "*.authorization"],
      censor: "[redacted]",
    },
  };
  if (usePretty) {
    // Loaded only for a person at a terminal; services under a supervisor log JSON and skip it.
    const pretty = createRequire(import.meta.url)("pino-pretty") as typeof import("pino-pretty");
    return pino(config, pretty({ colorize: true, sync: true, ignore: "pid,hostname" }));
  }
  return pino(config, stdout());
}

let shared: ReturnType<typeof pino.destination> | undefined;

/**
 * Standard output, buffered: a relay logs a line per exchange, and a write
 * call per line would cost more than the exchange itself. Lines go out at 4
 * KiB or every 100 ms, and whatever is left when the process exits.
 */
function stdout(): ReturnType<typeof pino.destination> {
  if (shared) return shared;
  const dest = pino.destination({ dest: 1, sync: false, minLength: 4096 });
  const timer = setInterval(() => dest.flush(), 100);
  timer.unref();
  process.once("exit", () => {
    try {
      dest.flushSync();
    } catch {
      // stdout is gone (a closed pipe): nothing more can be said
    }
  });
  shared = dest;
  return dest;
}
