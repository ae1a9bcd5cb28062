// What gRPC clients are told, by the tunnel endpoint and by the HTTP edge when a
// gRPC call to a target fails in the relay: status codes and grpc-message.

/** gRPC status codes the relay answers with (the numbers are the gRPC spec's). */
export const GrpcStatus = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/**
 * grpc-message encoding (gRPC over HTTP/2 spec): printable ASCII stays as it
 * is, '%' and everything else is percent-encoded as UTF-8. Clients decode it
 * with decodeURI, which would leave encodeURIComponent's %3A and %2F in place.
 */
export function encodeGrpcMessage(message: string): string {
  return message.replace(/[^\x20-\x24\x26-\x7e]/gu, (c) => encodeURIComponent(c));
}
