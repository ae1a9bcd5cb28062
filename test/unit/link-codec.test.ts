import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { FramesRequestSchema, type OpenExchange, OpenExchangeSchema, type OpenResult } from "../../gen/ferry/cluster/v1/cluster_pb.js";
import { encodeLinkOpen, encodeLinkOpenResult } from "../../services/cluster/link-codec.js";

/** The message inside a gRPC frame, after checking its 5-byte header. */
function body(framed: Buffer): Uint8Array {
  expect(framed[0]).toBe(0);
  expect(framed.readUInt32BE(1)).toBe(framed.length - 5);
  return framed.subarray(5);
}

const id = Uint8Array.from({ length: 16 }, (_, i) => i * 17);

describe("link codec", () => {
  const opens: OpenExchange[] = [
    create(OpenExchangeSchema, { exchangeId: id, tenant: "acme", target: "app", ingressNode: "node-a" }),
    create(OpenExchangeSchema, { exchangeId: id, tenant: "t".repeat(63), target: "x", ingressNode: "n".repeat(200) }),
    create(OpenExchangeSchema, {}),
  ];
  it.each(opens.map((o, i) => [i, o] as const))("writes open %i as protobuf-es does", (_, open) => {
    const bytes = body(encodeLinkOpen(open));
    expect(Buffer.from(bytes)).toEqual(Buffer.from(toBinary(FramesRequestSchema, create(FramesRequestSchema, { open }))));
    expect(fromBinary(FramesRequestSchema, Uint8Array.from(bytes)).open).toEqual(open);
  });

  const results: OpenResult["result"][] = [
    { case: "accepted", value: { $typeName: "ferry.cluster.v1.Accepted", egressNode: "b", requestWindow: 524_288, maxFrameSize: 65_536, openedOverLink: true } },
    { case: "accepted", value: { $typeName: "ferry.cluster.v1.Accepted", egressNode: "node-b", requestWindow: 2 ** 32 - 1, maxFrameSize: 0, openedOverLink: false } },
    { case: "refused", value: { $typeName: "ferry.cluster.v1.Refused", kind: "unavailable", code: "connector_busy", message: "zu beschäftigt: ✓ ".repeat(40), retryAfterSeconds: 3 } },
    { case: "refused", value: { $typeName: "ferry.cluster.v1.Refused", kind: "", code: "", message: "", retryAfterSeconds: 0 } },
    { case: undefined },
  ];
  it.each(results.map((r, i) => [i, r] as const))("writes open result %i as protobuf-es does", (_, result) => {
    const bytes = body(encodeLinkOpenResult(id, result));
    const expected = toBinary(FramesRequestSchema, create(FramesRequestSchema, { openResult: { exchangeId: id, result: { result } } }));
    expect(Buffer.from(bytes)).toEqual(Buffer.from(expected));
    const read = fromBinary(FramesRequestSchema, Uint8Array.from(bytes)).openResult!;
    expect(read.exchangeId).toEqual(id);
    expect(read.result?.result).toEqual(result);
  });
});
