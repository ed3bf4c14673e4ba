/**
 * Exactly K of N concurrent spends succeed: the property measured where it is the code's,
 * against the Firestore emulator and a real redis-server (the per-user lock), without the
 * functions emulator, whose one-process-per-concurrent-request cold starts dominate a burst
 * on a 2-core machine. test/e2e/credits.test.ts keeps a small race through the emulator.
 */
import assert from "node:assert/strict";
import { RedisGateway } from "../../functions/src/adapters/redis";
import { InsufficientCredits } from "../../functions/src/credits/errors";
import { spendCredits } from "../../functions/src/credits/operations";
import { PRICE_BOOK } from "../../functions/src/credits/price-book";
import { assertLedgerInvariants, db, fund } from "../support/credits";
import { newUid, suite } from "../support/suite";

describe("integration: concurrent spends for one balance", function () {
  this.timeout(300_000);

  // Without Redis every spend contends on the user document and retries its transaction, so that case races fewer.
  for (const { withLock, n, k } of [
    { withLock: true, n: 50, k: 17 },
    { withLock: false, n: 12, k: 5 },
  ]) {
    it(`when ${n} spends race for a balance that covers exactly ${k}${withLock ? " (Redis lock)" : " and Redis is not there"}, then exactly ${k} succeed and the rest are refused with {available, required}`, async () => {
      const uid = newUid("race");
      const unit = PRICE_BOOK["image.generate"];
      await fund(uid, unit * k);
      const lock = withLock
        ? new RedisGateway({
            url: suite.redisUrl,
            commandTimeoutMs: 2000,
            connectWaitMs: 2000,
            breaker: { failureThreshold: 1000, cooldownMs: 10 },
          })
        : undefined;
      try {
        const results = await Promise.allSettled(
          Array.from({ length: n }, (_, i) =>
            spendCredits({ db: db(), lock }, uid, {
              feature: "image.generate",
              quantity: 1,
              idempotency_key: `race-${i}`,
            }),
          ),
        );
        const ok = results.filter((r) => r.status === "fulfilled");
        const refused = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
        assert.equal(ok.length, k, refused.map((r) => String(r.reason)).join("; "));
        for (const { reason } of refused) {
          assert.ok(reason instanceof InsufficientCredits, String(reason));
          const details = reason.details as { available: number; required: number };
          assert.equal(details.required, unit);
          assert.ok(details.available < unit);
        }
        const state = await assertLedgerInvariants(uid);
        assert.equal(state.balance, 0);
        assert.equal(state.entries, k + 1); // the grant and k spends
      } finally {
        await lock?.close();
      }
    });
  }
});
