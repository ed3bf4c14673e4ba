/**
 * Metering by the app's own servers (the `meterUsage` endpoint): a spend on
 * the user the request names, acting as the API client, with the same
 * pricing, idempotency and rate limits as a user's own spendCredits.
 */
import { spendCredits, type ChangeResult, type Deps } from "./operations";
import type { RateLimiter } from "./rate-limit";
import type { MeterInput } from "./schemas";

/** The actor of metered spends; their idempotency keys live in its key space for the user. */
export const METERING_ACTOR = "api:metering";

export async function meterUsage(deps: Deps & { limiter: RateLimiter }, input: MeterInput): Promise<ChangeResult> {
  const { user_id: uid, ...spend } = input;
  // The limit is checked with the user lock's first try, in one Redis round trip (see spend.ts).
  return spendCredits(deps, uid, spend, METERING_ACTOR, { gate: deps.limiter.gate("spend", uid) });
}
