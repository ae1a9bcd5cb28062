import { type Client, Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AdminService } from "../../../gen/ferry/admin/v1/admin_service_pb.js";

export type Admin = Client<typeof AdminService>;

/**
 * The admin API of the origin that served the console, with the session's
 * token on every call; an Unauthenticated answer (revoked, wrong) ends the session.
 */
export function adminClient(token: string, onUnauthenticated: (message: string) => void): Admin {
  const auth: Interceptor = (next) => async (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    try {
      return await next(req);
    } catch (err) {
      const e = ConnectError.from(err);
      if (e.code === Code.Unauthenticated) onUnauthenticated(e.rawMessage);
      throw err;
    }
  };
  // Binary: smaller and cheaper than JSON for the relay to write, a message per batch of exchanges on a busy node.
  return createClient(AdminService, createConnectTransport({ baseUrl: location.origin, interceptors: [auth], useBinaryFormat: true }));
}

/** What to tell the operator about a failed call: the relay's own message, with its code. */
export function errorText(err: unknown): string {
  const e = ConnectError.from(err);
  return `${Code[e.code] ?? "Error"}: ${e.rawMessage}`;
}
