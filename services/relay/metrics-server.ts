import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { FerryError } from "../../core/errors.js";
import { joinHostPort } from "../../core/host-port.js";
import type { Metrics } from "../observability/metrics.js";
import { metricsEndpoint } from "./metrics-endpoint.js";

/** /metrics alone, without a token, on an address meant for an internal network (--metrics-listen). */
export async function serveMetrics(metrics: Metrics, where: { host: string; port: number }): Promise<{ server: Server; url: string }> {
  const endpoint = metricsEndpoint(metrics);
  const server = createServer((req, res) => {
    if (req.url?.split("?")[0] === "/metrics") return endpoint(req, res);
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("only /metrics here\n");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(new FerryError("failed_precondition", "listen_failed", `cannot listen on ${where.host}:${where.port} for metrics: ${err.code}`)),
    );
    server.listen(where.port, where.host, resolve);
  });
  const a = server.address() as AddressInfo;
  return { server, url: `http://${joinHostPort(a.address, a.port)}` };
}
