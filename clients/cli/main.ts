#!/usr/bin/env node
import type { Command } from "commander";
import { tuneHeapForStreaming } from "./heap-tuning.js";
import { ferryProgram } from "./program.js";
import { runMain } from "./run.js";

tuneHeapForStreaming();

/**
 * Each subcommand's module, loaded only when it runs (or for the overall --help): a connector on a small
 * on-premises box should not hold the admin API's generated code and client in memory.
 */
const COMMANDS: Record<string, () => Promise<Command>> = {
  relay: async () => (await import("./relay-command.js")).relayCommand(),
  connector: async () => (await import("./connector-command.js")).connectorCommand(),
  admin: async () => (await import("./admin-command.js")).adminCommand(),
  doctor: async () => (await import("./doctor-command.js")).doctorCommand(),
  demo: async () => (await import("./demo-command.js")).demoCommand(),
};

const program = ferryProgram();

const chosen = process.argv[2];
const names = chosen !== undefined && chosen in COMMANDS ? [chosen] : Object.keys(COMMANDS);
for (const name of names) program.addCommand(await COMMANDS[name]!());

await runMain(() => program.parseAsync(process.argv));
