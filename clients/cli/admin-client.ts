import { type Client, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AdminService } from "../../gen/ferry/admin/v1/admin_service_pb.js";

export type AdminClient = Client<typeof AdminService>;

/**
 * An AdminService client on the generated descriptors, speaking the Connect
 * protocol over HTTP/1.1 so it works through any proxy in front of the relay.
 */
export function createAdminClient(relayUrl: string, token: string, options: { ca?: string | Buffer } = {}): AdminClient {
  const auth: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  return createClient(
    AdminService,
    createConnectTransport({
      baseUrl: relayUrl,
      httpVersion: "1.1",
      interceptors: [auth],
      nodeOptions: options.ca ? { ca: options.ca } : undefined,
    }),
  );
}
