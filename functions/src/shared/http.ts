/** HTTP endpoints' error answers, from the same domain errors callables use. */
import type { Response } from "express";
import { toHttpsError } from "./callable";

/** The HTTP status firebase-functions uses for each HttpsError code. */
const STATUS: Record<string, number> = {
  ok: 200,
  "invalid-argument": 400,
  "failed-precondition": 400,
  "out-of-range": 400,
  unauthenticated: 401,
  "permission-denied": 403,
  "not-found": 404,
  "already-exists": 409,
  aborted: 409,
  "resource-exhausted": 429,
  cancelled: 499,
  unimplemented: 501,
  unavailable: 503,
  "deadline-exceeded": 504,
  internal: 500,
  unknown: 500,
  "data-loss": 500,
};

/** Answers `{error: {status, message, details}}` with the matching HTTP status. */
export function sendError(response: Response, error: unknown, where: string): void {
  const httpsError = toHttpsError(error, where);
  const status = STATUS[httpsError.code] ?? 500;
  if (status === 429) {
    const retryAfterMs = (httpsError.details as { retry_after_ms?: number } | undefined)?.retry_after_ms;
    if (retryAfterMs !== undefined) response.set("Retry-After", String(Math.max(1, Math.ceil(retryAfterMs / 1000))));
  }
  response.status(status).json({ error: { status: httpsError.code, message: httpsError.message, details: httpsError.details ?? null } });
}
