import type { Command } from "commander";
import { FerryError } from "../../core/errors.js";
import { argvSecretWarning, readSecretFile } from "../../core/secret-file.js";
import { type AdminClient, createAdminClient } from "./admin-client.js";

interface Globals {
  relay: string;
  token?: string;
  tokenFile?: string;
  json?: boolean;
}
/** The options of one `ferry admin NOUN VERB` run, the admin command's own (--relay, --token...) included. */
export type Opts = Globals & Record<string, unknown>;
export type Action = (client: AdminClient, o: Opts, args: string[]) => Promise<void>;

/** A `ferry admin` noun: a group of verbs. */
export function noun(parent: Command, name: string, description: string): Command {
  return parent.command(name).description(description);
}

/** Adds a verb with --json and wires it to a client built from the admin command's options. */
export function verb(parent: Command, spec: string, description: string, action: Action, extra?: (c: Command) => Command): void {
  const cmd = parent.command(spec).description(description).option("--json", "print JSON for scripts");
  extra?.(cmd);
  cmd.action(async (...params: unknown[]) => {
    const self = params[params.length - 1] as Command;
    const o = self.optsWithGlobals() as Opts;
    const token = adminToken(o);
    let relay: URL;
    try {
      relay = new URL(o.relay);
    } catch {
      throw usage(`--relay "${o.relay}" is not a URL`);
    }
    await action(createAdminClient(relay.origin, token), o, self.args);
  });
}

/**
 * The admin token: FERRY_TOKEN (or FERRY_ADMIN_TOKEN, the relay's own), a
 * file, or --token, which still works but every local user can read it in
 * the process list, so it warns. An empty variable counts as unset, as the
 * relay treats FERRY_ADMIN_TOKEN.
 */
function adminToken(o: Opts): string {
  if (o.token && o.tokenFile) throw usage("--token and --token-file contradict each other: give one");
  const warn = (line: string) => process.stderr.write(`${line}\n`);
  if (o.token) {
    warn(argvSecretWarning("--token", "FERRY_TOKEN or --token-file"));
    return o.token;
  }
  if (o.tokenFile) return readSecretFile(o.tokenFile, "--token-file", warn);
  const token = process.env.FERRY_TOKEN || process.env.FERRY_ADMIN_TOKEN;
  if (!token) throw usage("no admin token: set FERRY_TOKEN or pass --token-file FILE");
  return token;
}

/** A usage error: exit 1, the message on stderr. */
export function usage(message: string): FerryError {
  return new FerryError("invalid_argument", "usage", message);
}
