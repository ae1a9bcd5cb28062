/**
 * The one error type of Ferry's own code. `kind` is the class of failure and
 * decides the HTTP status or Connect code at each edge; `code` is the specific,
 * stable machine-readable reason clients and scripts can branch on.
 */
export type ErrorKind =
  | "invalid_argument"
  | "unauthenticated"
  | "permission_denied"
  | "not_found"
  | "already_exists"
  | "failed_precondition"
  | "too_large"
  | "resource_exhausted"
  | "unavailable"
  | "bad_gateway"
  | "deadline_exceeded"
  | "internal";

export class FerryError extends Error {
  constructor(
    readonly kind: ErrorKind,
    readonly code: string,
    message: string,
    /** signIn: a browser's navigation is sent there (302) instead of getting the error: the sign-in page of an app that wants one. */
    readonly extra: { retryAfterSeconds?: number; cause?: unknown; signIn?: string } = {},
  ) {
    super(message, { cause: extra.cause });
    this.name = "FerryError";
  }
}

export const HTTP_STATUS: Record<ErrorKind, number> = {
  invalid_argument: 400,
  unauthenticated: 401,
  permission_denied: 403,
  not_found: 404,
  already_exists: 409,
  failed_precondition: 412,
  too_large: 413,
  // Too many attempts or requests from one source: wait Retry-After and try again.
  resource_exhausted: 429,
  internal: 500,
  bad_gateway: 502,
  unavailable: 503,
  deadline_exceeded: 504,
};
