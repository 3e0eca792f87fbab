/**
 * Errors that carry their own HTTP status and a stable code, so every front
 * can turn them into a clear answer (a 4xx, an Access-Reject with a
 * Reply-Message) without knowing where they came from.
 */
export class CountersignError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'CountersignError';
  }
}

export const notFound = (what: string, name: string) =>
  new CountersignError(404, `${what}_not_found`, `${what.replace(/_/g, ' ')} '${name}' does not exist`);

export const badRequest = (code: string, message: string, details?: Record<string, unknown>) =>
  new CountersignError(400, code, message, details);

export const conflict = (code: string, message: string) => new CountersignError(409, code, message);

/** The store could not be reached: callers must deny, never approve. */
export class StoreUnavailableError extends CountersignError {
  constructor(cause?: unknown) {
    super(503, 'store_unavailable', 'the challenge store is unreachable; logins are denied until it returns');
    if (cause) this.cause = cause;
  }
}
