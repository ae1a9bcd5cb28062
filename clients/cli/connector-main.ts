/**
 * The connector binary's entry (scripts/build-connector-binary.mjs bundles it into one CommonJS file and
 * a Node single executable): `ferry` with only what an on-premises box runs, `connector` and `doctor`.
 * No top-level await (CommonJS has none), and nothing of the relay (services/) may be reachable from here.
 */
import { connectorCommand } from "./connector-command.js";
import { doctorCommand } from "./doctor-command.js";
import { tuneHeapForStreaming } from "./heap-tuning.js";
import { ferryProgram } from "./program.js";
import { runMain } from "./run.js";

tuneHeapForStreaming();

// Its usage lines name the file as it is installed (docs/install.md), not the package's `ferry`.
const program = ferryProgram()
  .name("ferry-connector")
  .addCommand(connectorCommand())
  .addCommand(doctorCommand())
  .addHelpText("after", "\nThis is the connector's single-file build: the relay and `ferry admin` come with the npm package.\n");

void runMain(() => program.parseAsync(process.argv));
