import type { ConnectError } from "@connectrpc/connect";
import { FerryError } from "../../core/errors.js";

/** Exit codes scripts rely on: 0 done, 1 usage or local error, 2 the server refused or failed the call. */
export const EXIT_USAGE = 1;
export const EXIT_SERVER = 2;

/**
 * The CLI's error edge: a FerryError (bad input, local failure) becomes one
 * line on stderr and exit 1; a ConnectError (the relay's answer) its code and
 * message and exit 2; anything else is a bug and shows its stack.
 */
export async function runMain(main: () => Promise<unknown>): Promise<void> {
  try {
    await main();
  } catch (err) {
    process.exitCode = EXIT_USAGE;
    // Loaded on the error path only: a connector never needs connect-es otherwise (memory).
    const { Code, ConnectError } = await import("@connectrpc/connect");
    if (err instanceof FerryError) {
      process.stderr.write(`ferry: ${err.message}\n`);
    } else if (err instanceof ConnectError) {
      process.exitCode = EXIT_SERVER;
      process.stderr.write(`ferry: ${codeName(err, Code)}: ${err.rawMessage}\n`);
    } else {
      process.stderr.write(`ferry: unexpected error: ${(err as Error)?.stack ?? String(err)}\n`);
    }
  }
}

/** "InvalidArgument" -> "invalid_argument", the gRPC status names users know. */
function codeName(err: ConnectError, Code: Record<number, string>): string {
  return (Code[err.code] ?? `code ${err.code}`).replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

/** Collects a repeatable option into an array. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Runs `stop` on SIGINT/SIGTERM; a second signal exits at once. */
export function onShutdown(stop: (signal: string) => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1);
    stopping = true;
    stop(signal).then(
      () => process.exit(0),
      (err) => {
        process.stderr.write(`ferry: shutdown failed: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
}
