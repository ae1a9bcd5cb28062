import type { Duplex } from "node:stream";

/** The HTTP/2 client preface and an empty SETTINGS frame: what a gRPC client sends first. */
const PREFACE = Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);
const SETTINGS_FRAME_TYPE = 4;

/**
 * Sends the HTTP/2 preface on an open connection and reads the answer: "h2" when the peer answers with SETTINGS,
 * "http/1.1" when it answers in HTTP/1 (a proxy or server that does not speak HTTP/2 by prior knowledge),
 * "closed" when it hangs up or says nothing within the timeout. Destroys the connection when done.
 */
export function checkH2Preface(socket: Duplex, timeoutMs = 5_000): Promise<"h2" | "http/1.1" | "closed"> {
  return new Promise((resolve) => {
    let seen = Buffer.alloc(0);
    const finish = (answer: "h2" | "http/1.1" | "closed") => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.destroy();
      resolve(answer);
    };
    const onData = (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]);
      if (seen.length < 5) return;
      if (seen.subarray(0, 5).toString("latin1") === "HTTP/") return finish("http/1.1");
      finish(seen[3] === SETTINGS_FRAME_TYPE ? "h2" : "closed");
    };
    const timer = setTimeout(() => finish("closed"), timeoutMs);
    socket.on("data", onData);
    socket.once("close", () => finish(seen.subarray(0, 5).toString("latin1") === "HTTP/" ? "http/1.1" : "closed"));
    socket.once("error", () => finish("closed"));
    socket.write(PREFACE);
  });
}

/** The operator-facing explanation when the relay connection is not HTTP/2. */
export function notHttp2Problem(negotiated: string): { problem: string; fix: string } {
  return {
    problem: `the relay connection does not speak HTTP/2 (negotiated ${negotiated}): a TLS-inspecting proxy is probably in the way`,
    fix: "exempt the relay's host from TLS inspection (or from the proxy), so the connector reaches the relay end to end",
  };
}
