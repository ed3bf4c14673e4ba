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
import { firestore } from "../adapters/firebase";
import { redis } from "../adapters/redis";
import { METERING_API_KEY } from "../config";
import { apiKeyEndpoint } from "../shared/http";
import { spendCredits } from "./operations";
import { spendLimiter } from "./ratelimit";
import { meterInput } from "./schemas";

export const meterUsage = apiKeyEndpoint({
  name: "meterUsage",
  secret: METERING_API_KEY,
  schema: meterInput,
  handler: async (input) => {
    await spendLimiter().enforce("spend", input.user_id);
    const { user_id: uid, ...spend } = input;
    const result = await spendCredits({ db: firestore(), lock: redis() }, uid, spend, "api:metering");
    return { status: result.replayed ? 200 : 201, body: { result } };
  },
});
