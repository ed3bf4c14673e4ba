/**
 * A user's spend as the `spendCredits` callable makes it, with its Redis work
 * folded around the ledger transaction. Round trips of a user's first spend on an instance:
 *
 *   1 Redis      rate limit + the user lock's first try (one script, rate-limit.ts gate), which also says
 *                whether another instance held the lock since this one (user-lock.ts lastHolderKeyOf)
 *   2 Firestore  the idempotency record, the account and the lots this instance saw last (one getAll); not
 *                on the next spend, which reads what this instance's last one committed (committed-state.ts)
 *                unless another instance held the lock since
 *   3 Firestore  the first page of the user's active lots in burn order, when those cannot be trusted
 *                (lots.ts; a query cannot join a getAll)
 *   4 Firestore  commit: one batch guarded by what 2 and 3 (or the memory) read, not a transaction (operations.ts
 *                spendCredits, prefetched-transaction.ts guardedAttempt); if it misses, the spend runs
 *                again as a transaction
 *   5 Redis      the lock's release + the balance cache fill (one pipeline), sent
 *                before the answer but not waited for (RedisGateway.send)
 *
 * (seven before they were folded; the caller waits for four, two on the next spend: 1 and 4). A replay stops
 * after 2 (tried from memory, after a commit that fails on its record) and sends only the release; more lots than the first page holds add a page each; a lock held
 * by another spend adds a try per wait. Without Redis, 1 and 5 fail fast
 * (breaker) and the spend runs on Firestore alone, limited per instance.
 */
import type { Firestore } from "firebase-admin/firestore";
import type { RedisGateway } from "../adapters/redis";
import { BalanceCache } from "../mirror/cache";
import type { Posted } from "./ledger";
import { spendCredits, type ChangeResult } from "./operations";
import type { RateLimiter } from "./rate-limit";
import type { SpendInput } from "./schemas";
import type { Clock } from "../shared/time";

export interface SpendPathDeps {
  db: Firestore;
  redis: RedisGateway;
  limiter: RateLimiter;
  clock?: Clock;
}

export function spendAsUser(deps: SpendPathDeps, uid: string, input: SpendInput): Promise<ChangeResult> {
  const cache = new BalanceCache(deps.redis);
  return spendCredits({ db: deps.db, lock: deps.redis, clock: deps.clock }, uid, input, `user:${uid}`, {
    gate: deps.limiter.gate("spend", uid),
    // The caller now knows this version; make the cache at least as new (best effort). A replay carries the
    // first answer's (older) state, which must not go back into the cache.
    after: (result: Posted & { replayed: boolean }) =>
      result.replayed
        ? undefined
        : (pipeline) =>
            cache.queuePut(pipeline, uid, {
              balance: result.balance,
              held: result.held,
              available: result.available,
              version: result.version,
            }),
  });
}
