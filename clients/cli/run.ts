import { Code, ConnectError } from "@connectrpc/connect";
import { FerryError } from "../sdk/errors.js";

/**
 * The CLI's error edge: a FerryError or ConnectError becomes one line on
 * stderr and exit code 1; anything else is a bug and shows its stack.
 */
export async function runMain(main: () => Promise<unknown>): Promise<void> {
  try {
    await main();
  } catch (err) {
    process.exitCode = 1;
    if (err instanceof FerryError) {
      process.stderr.write(`ferry: ${err.message}\n`);
    } else if (err instanceof ConnectError) {
      process.stderr.write(`ferry: ${codeName(err)}: ${err.rawMessage}\n`);
    } else {
      process.stderr.write(`ferry: unexpected error: ${(err as Error)?.stack ?? String(err)}\n`);
    }
  }
}

/** "InvalidArgument" -> "invalid_argument", the gRPC status names users know. */
function codeName(err: ConnectError): string {
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
