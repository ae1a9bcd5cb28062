import { describe, expect, it } from "vitest";
import { encodeGrpcMessage } from "../../services/http/grpc-status.js";

// grpc-message as the gRPC over HTTP/2 spec encodes it, and as clients (decodeURI) read it back.
describe("encodeGrpcMessage", () => {
  it.each([
    ["maintenance: window / 2, done?", "maintenance: window / 2, done?"],
    ["100% sure", "100%25 sure"],
    ["ünïcode ✓", "%C3%BCn%C3%AFcode %E2%9C%93"],
    ["line\nbreak\ttab", "line%0Abreak%09tab"],
  ])("encodes %j as %j", (message, encoded) => {
    expect(encodeGrpcMessage(message)).toBe(encoded);
    expect(decodeURI(encoded)).toBe(message);
  });
});
