import { create } from "@bufbuild/protobuf";
import { type Frame, FrameSchema, type ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";

/** The frame that ends one exchange with `code` on whichever side receives it. */
export function resetFrame(exchangeId: Uint8Array, code: ResetCode, message: string): Frame {
  return create(FrameSchema, { exchangeId, kind: { case: "reset", value: { code, message } } });
}
