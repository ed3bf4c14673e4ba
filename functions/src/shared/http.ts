/** HTTP endpoints for servers and workers: API-key auth, strict input, and the same error mapping as callables. */
import { createHash, timingSafeEqual } from "node:crypto";
import type { Response } from "express";
import type { SecretParam } from "firebase-functions/params";
import { onRequest } from "firebase-functions/v2/https";
import type { ZodType } from "zod";
import { parseInput, rejectPrototypeKeys, toHttpsError } from "./callable";
import { DomainError } from "./errors";

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
  response
    .status(status)
    .json({ error: { status: httpsError.code, message: httpsError.message, details: httpsError.details ?? null } });
}

/** Compares digests, so neither the key's length nor its content leaks through timing. */
export function apiKeyMatches(presented: string, expected: string): boolean {
  if (!expected) return false;
  const a = createHash("sha256").update(presented).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b);
}

export interface ApiKeyEndpointSpec<I, O> {
  /** Stable name used in logs. */
  name: string;
  /** The API key callers send as `Authorization: Bearer <key>`; attached to this function only. */
  secret: SecretParam;
  schema: ZodType<I>;
  handler: (input: I) => Promise<{ status: number; body: O }>;
  timeoutSeconds?: number;
}

/** A POST endpoint authenticated by an API key: key first, then the strict schema, then the handler. */
export function apiKeyEndpoint<I, O>(spec: ApiKeyEndpointSpec<I, O>) {
  return onRequest({ secrets: [spec.secret], timeoutSeconds: spec.timeoutSeconds ?? 30 }, async (request, response) => {
    try {
      if (request.method !== "POST") {
        response.set("Allow", "POST");
        throw new DomainError("invalid-argument", "Use POST with a JSON body.");
      }
      const header = request.get("authorization") ?? "";
      const presented = header.startsWith("Bearer ") ? header.slice("Bearer ".length) : "";
      if (!apiKeyMatches(presented, spec.secret.value())) {
        throw new DomainError("unauthenticated", "A valid API key is required (Authorization: Bearer <key>).");
      }
      rejectPrototypeKeys(request.body);
      const { status, body } = await spec.handler(parseInput(spec.schema, request.body));
      response.status(status).json(body);
    } catch (error) {
      sendError(response, error, spec.name);
    }
  });
}
