/**
 * HTTPS `meterUsage`: the app's own servers meter a user's usage.
 *
 *   POST /meterUsage
 *   Authorization: Bearer <METERING_API_KEY>
 *   {"user_id": "...", "feature": "chat.message", "quantity": 3, "idempotency_key": "...", "metadata": {...}}
 *
 * Same pricing, idempotency, rate limits and errors as spendCredits; errors
 * come back as {error: {status, message, details}} with the matching HTTP status.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { onRequest } from "firebase-functions/v2/https";
import { firestore } from "../adapters/firebase";
import { redis } from "../adapters/redis";
import { METERING_API_KEY } from "../config";
import { parseInput, rejectPrototypeKeys } from "../shared/callable";
import { DomainError } from "../shared/errors";
import { sendError } from "../shared/http";
import { spendCredits } from "./operations";
import { spendLimiter } from "./ratelimit";
import { meterInput } from "./schemas";

/** Compares digests, so neither the key's length nor its content leaks through timing. */
export function apiKeyMatches(presented: string, expected: string): boolean {
  if (!expected) return false;
  const a = createHash("sha256").update(presented).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b);
}

export const meterUsage = onRequest({ secrets: [METERING_API_KEY], timeoutSeconds: 30 }, async (request, response) => {
  try {
    if (request.method !== "POST") {
      response.set("Allow", "POST");
      throw new DomainError("invalid-argument", "Use POST with a JSON body.");
    }
    const header = request.get("authorization") ?? "";
    const presented = header.startsWith("Bearer ") ? header.slice("Bearer ".length) : "";
    if (!apiKeyMatches(presented, METERING_API_KEY.value())) {
      throw new DomainError("unauthenticated", "A valid API key is required (Authorization: Bearer <key>).");
    }
    rejectPrototypeKeys(request.body);
    const input = parseInput(meterInput, request.body);
    await spendLimiter().enforce("spend", input.user_id);
    const { user_id: uid, ...spend } = input;
    const result = await spendCredits({ db: firestore(), lock: redis() }, uid, spend, "api:metering");
    response.status(result.replayed ? 200 : 201).json({ result });
  } catch (error) {
    sendError(response, error, "meterUsage");
  }
});
