import { MAX_PASSWORD_CHARS } from "../../services/access/basic-auth.js";
import { usage } from "./admin-verbs.js";

/** What is read from a pipe at most: a password, not a file. */
const MAX_STDIN_BYTES = 64 * 1024;

/**
 * A password for `ferry admin access hash-password`, never from the command
 * line: on a terminal asked twice without echo (prompts on stderr, so stdout
 * holds only the hash), else all of stdin with one final newline dropped
 * (`printf %s "$PASSWORD" |` or `echo "$PASSWORD" |` alike).
 */
export async function readPassword(): Promise<string> {
  if (process.stdin.isTTY) {
    const first = await askHidden("password: ");
    const again = await askHidden("again: ");
    if (first !== again) throw usage("the two passwords differ: nothing was hashed");
    return checked(first);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_STDIN_BYTES) throw usage(`stdin holds more than ${MAX_STDIN_BYTES / 1024} KiB: give the password alone`);
    chunks.push(chunk);
  }
  return checked(Buffer.concat(chunks).toString("utf8").replace(/\r?\n$/, ""));
}

function checked(password: string): string {
  if (password === "") throw usage("the password is empty: give it on stdin (e.g. printf %s \"$PASSWORD\" | ferry admin access hash-password) or at the prompt");
  if (password.length > MAX_PASSWORD_CHARS) throw usage(`the password is longer than ${MAX_PASSWORD_CHARS} characters`);
  if (/[\r\n]/.test(password)) throw usage("the password spans several lines: give it alone, on one line");
  return password;
}

/** One line from the terminal in raw mode, nothing echoed; Ctrl-C or Ctrl-D on an empty line cancels. */
function askHidden(question: string): Promise<string> {
  const stdin = process.stdin;
  return new Promise((resolve, reject) => {
    let text = "";
    const finish = (err?: Error) => {
      stdin.off("data", onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write("\n");
      if (err) reject(err);
      else resolve(text);
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === "\r" || ch === "\n") return finish();
        if (ch === "\u0003" || (ch === "\u0004" && text === "")) return finish(usage("cancelled: nothing was hashed"));
        if (ch === "\u0004") return finish();
        if (ch === "\u007f" || ch === "\b") text = [...text].slice(0, -1).join("");
        else text += ch;
      }
    };
    process.stderr.write(question);
    stdin.setEncoding("utf8");
    stdin.setRawMode(true);
    stdin.on("data", onData);
    stdin.resume();
  });
}
