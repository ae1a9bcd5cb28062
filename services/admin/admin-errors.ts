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
 * cause is logged, never shown to the caller. A server stream's errors come
 * while its messages are read, after the handler returned: mapped there too.
 */
export function errorInterceptor(log: Logger): Interceptor {
  const mapped = (err: unknown, rpc: string): ConnectError => {
    if (err instanceof ConnectError) return err;
    if (err instanceof FerryError) return new ConnectError(err.message, CONNECT_CODE[err.kind]);
    log.error({ err, rpc }, "admin call failed");
    return new ConnectError("internal error", Code.Internal);
  };
  return (next) => async (req) => {
    try {
      const res = await next(req);
      if (!res.stream) return res;
      const messages = res.message;
      return {
        ...res,
        message: (async function* () {
          try {
            yield* messages;
          } catch (err) {
            throw mapped(err, req.method.name);
          }
        })(),
      };
    } catch (err) {
      throw mapped(err, req.method.name);
    }
  };
}
