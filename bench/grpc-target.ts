// The gRPC benchmark target: ferry.testing.v1.EchoService on cleartext HTTP/2
// (h2c, prior knowledge) with connect-node, as a gRPC server on-prem would be.
// It speaks HTTP/2 only: an HTTP/1.1 request gets a 505 that says so (nothing
// else in a bench run answers 505), so a run can tell "the connector spoke
// HTTP/1.1 to an h2c:// target" apart from any other failure.
//
//   tsx bench/grpc-target.ts  -> prints {"port": N} on stdout when listening.
import { createServer as createHttp2Server } from "node:http2";
import { createServer as createNetServer, type AddressInfo, type Socket } from "node:net";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { EchoService } from "../gen/ferry/testing/v1/echo_service_pb.js";

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const NOT_H2 = "this target speaks HTTP/2 only (h2c)\n";

function routes(router: ConnectRouter): void {
  router.service(EchoService, {
    echo: (req) => ({ message: req.message, payload: req.payload }),
  });
}

const h2 = createHttp2Server(connectNodeAdapter({ routes }));

/** Hands HTTP/2 connections to the server and answers anything else with a 505. */
function sniff(socket: Socket): void {
  let seen = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    seen = Buffer.concat([seen, chunk]);
    const n = Math.min(seen.length, H2_PREFACE.length);
    const isH2 = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
    if (isH2 && seen.length < H2_PREFACE.length) return;
    socket.off("data", onData);
    if (isH2) {
      socket.pause();
      socket.unshift(seen);
      h2.emit("connection", socket);
      return;
    }
    socket.end(
      `HTTP/1.1 505 HTTP Version Not Supported\r\ncontent-type: text/plain\r\ncontent-length: ${NOT_H2.length}\r\nconnection: close\r\n\r\n${NOT_H2}`,
    );
  };
  socket.on("data", onData);
  socket.on("error", () => socket.destroy());
}

// noDelay: small frames leave at once (Nagle plus delayed ACKs costs ~40 ms a round trip).
const server = createNetServer({ noDelay: true }, sniff);
server.listen(0, "127.0.0.1", () => process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`));
process.on("SIGTERM", () => process.exit(0));
