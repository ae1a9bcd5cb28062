import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { type ErrorKind, FerryError } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";

const CONNECT_CODE: Record<ErrorKind, Code> = {
  invalid_argument: Code.InvalidArgument,
  unauthenticated: Code.Unauthenticated,
  permission_denied: Code.PermissionDenied,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  failed_precondition: Code.FailedPrecondition,
  too_large: Code.ResourceExhausted,
  resource_exhausted: Code.ResourceExhausted,
  unavailable: Code.Unavailable,
  bad_gateway: Code.Unavailable,
  deadline_exceeded: Code.DeadlineExceeded,
  internal: Code.Internal,
};

/**
 * The admin edge's error mapping: FerryError becomes a ConnectError with the
 * matching code and the same message; anything else is an internal error whose
 * cause is logged, never shown to the caller.
 */
export function errorInterceptor(log: Logger): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (err) {
      if (err instanceof ConnectError) throw err;
      if (err instanceof FerryError) throw new ConnectError(err.message, CONNECT_CODE[err.kind]);
      log.error({ err, rpc: req.method.name }, "admin call failed");
      throw new ConnectError("internal error", Code.Internal);
    }
  };
}
