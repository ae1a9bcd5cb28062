import { Command } from "commander";
import { FERRY_VERSION } from "../../core/version.js";

/**
 * The `ferry` program without its subcommands: what `ferry` (main.ts) and the connector binary
 * (connector-main.ts) share, so both say the same --version (package.json's) and --help heading.
 */
export function ferryProgram(): Command {
  return new Command("ferry")
    .description("Reach on-premises HTTP services through a relay, with only outbound connections from the premises.")
    .version(FERRY_VERSION, "-V, --version")
    .showHelpAfterError("(run with --help for usage)");
}
