#!/usr/bin/env node
import { Command } from "commander";
import { FERRY_VERSION } from "../../core/version.js";
import { adminCommand } from "./admin-command.js";
import { connectorCommand } from "./connector-command.js";
import { demoCommand } from "./demo-command.js";
import { doctorCommand } from "./doctor-command.js";
import { relayCommand } from "./relay-command.js";
import { runMain } from "./run.js";

const program = new Command("ferry")
  .description("Reach on-premises HTTP services through a relay, with only outbound connections from the premises.")
  .version(FERRY_VERSION, "-V, --version")
  .showHelpAfterError("(run with --help for usage)")
  .addCommand(relayCommand())
  .addCommand(connectorCommand())
  .addCommand(adminCommand())
  .addCommand(doctorCommand())
  .addCommand(demoCommand());

await runMain(() => program.parseAsync(process.argv));
