import { FerryError } from "../../core/errors.js";
import { bearer } from "../auth/bearer.js";
import { type NodeRequest, type NodeResponse, sendError } from "../http/http-error.js";
import type { Metrics } from "../observability/metrics.js";

/**
 * GET /metrics in the Prometheus text format. On the relay's public port it
 * needs an admin or viewer bearer token (`allowed`); without `allowed` it is
 * open, for a separate --metrics-listen address on an internal network.
 */
export function metricsEndpoint(metrics: Metrics, allowed?: (token: string) => boolean) {
  return (req: NodeRequest, res: NodeResponse): void => {
    if (allowed) {
      const token = bearer(req.headers.authorization);
      if (!token) return sendError(res, new FerryError("unauthenticated", "missing_token", "send authorization: Bearer <admin or viewer token>"));
      if (!allowed(token)) return sendError(res, new FerryError("permission_denied", "not_allowed", "metrics need an admin or viewer token"));
    }
    metrics.render().then(
      (text) => {
        res.writeHead(200, { "content-type": metrics.contentType, "cache-control": "no-store" });
        res.end(text);
      },
      (err: Error) => sendError(res, new FerryError("internal", "internal", "metrics failed", { cause: err })),
    );
  };
}
