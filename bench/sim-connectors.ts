// Simulated connectors for the idle-capacity benchmark: opens N tunnel streams
// to a relay (100 per TCP connection), advertises target "idle", takes every
// exchange and never answers it. Prints {"tunnels": N} once all are welcomed and
// {"exchanges": n} as exchanges arrive.
//
//   tsx bench/sim-connectors.ts RELAY_URL KEY TUNNELS EXPECTED_EXCHANGES
import { create } from "@bufbuild/protobuf";
import { credentials, Metadata, type ClientDuplexStream } from "@grpc/grpc-js";
import { grpcClientConstructor } from "../test/helpers/grpc-client.js";
import { ConnectRequestSchema, type ConnectRequest, type ConnectResponse, TunnelService } from "../gen/ferry/tunnel/v1/tunnel_service_pb.js";

const [relayUrl, key, tunnelsArg, expectedArg] = process.argv.slice(2);
const tunnels = Number(tunnelsArg);
const expected = Number(expectedArg);
const PER_CONNECTION = 100;
const Client = grpcClientConstructor(TunnelService);
const host = new URL(relayUrl!).host;

let welcomed = 0;
let exchanges = 0;
const calls: Array<ClientDuplexStream<ConnectRequest, ConnectResponse>> = [];

for (let c = 0; c * PER_CONNECTION < tunnels; c++) {
  const client = new Client(host, credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
  for (let i = c * PER_CONNECTION; i < Math.min(tunnels, (c + 1) * PER_CONNECTION); i++) {
    const metadata = new Metadata();
    metadata.set("authorization", `Bearer ${key}`);
    const call = (client as unknown as { connect(m: Metadata): ClientDuplexStream<ConnectRequest, ConnectResponse> }).connect(metadata);
    calls.push(call);
    call.on("error", (e: Error) => {
      process.stderr.write(`tunnel ${i}: ${e.message}\n`);
      process.exit(1);
    });
    call.on("data", (m: ConnectResponse) => {
      const msg = m.message;
      if (msg.case === "welcome") {
        if (++welcomed === tunnels) process.stdout.write(`${JSON.stringify({ tunnels: welcomed })}\n`);
      } else if (msg.case === "ping") {
        call.write(create(ConnectRequestSchema, { message: { case: "pong", value: { nonce: msg.value.nonce } } }));
      } else if (msg.case === "frames") {
        for (const f of msg.value.frames) {
          if (f.kind.case === "requestHead" && (++exchanges === expected || exchanges % 100 === 0)) {
            process.stdout.write(`${JSON.stringify({ exchanges })}\n`);
          }
        }
      }
    });
    call.write(
      create(ConnectRequestSchema, {
        message: {
          case: "hello",
          value: { protocolVersion: 1, connectorId: `sim-${i}`, targets: [{ name: "idle" }], maxConcurrentExchanges: 1000, tunnelIndex: i },
        },
      }),
    );
  }
}

process.on("SIGTERM", () => {
  for (const call of calls) call.cancel();
  process.exit(0);
});
