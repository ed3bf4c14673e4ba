/**
 * The spend callable's Redis work folded around the ledger transaction (credits/spend.ts): the rate limit
 * and the user lock's first try are one script, the release and the balance cache fill one pipeline.
 * Real redis-server and Firestore emulator; a gateway to nowhere for "Redis down".
 */
import assert from "node:assert/strict";
import { RedisGateway } from "../../functions/src/adapters/redis";
import { RateLimited } from "../../functions/src/credits/errors";
import { RateLimiter } from "../../functions/src/credits/rate-limit";
import { spendAsUser } from "../../functions/src/credits/spend";
import { lockKeyOf } from "../../functions/src/credits/user-lock";
import { balanceKey } from "../../functions/src/mirror/cache";
import { assertLedgerInvariants, db, fund, ledgerOf } from "../support/credits";
import { newUid, suite, waitFor } from "../support/suite";

function liveGateway(): RedisGateway {
  return new RedisGateway({
    url: suite.redisUrl,
    commandTimeoutMs: 2000,
    connectWaitMs: 2000,
    breaker: { failureThreshold: 1000, cooldownMs: 10 },
  });
}

function downGateway(): RedisGateway {
  // Port 1 on loopback: nothing listens, every call fails fast.
  return new RedisGateway({
    url: "redis://127.0.0.1:1",
    commandTimeoutMs: 100,
    connectWaitMs: 100,
    breaker: { failureThreshold: 1, cooldownMs: 60_000 },
  });
}

const spendInput = (key: string) => ({ feature: "chat.message", quantity: 1, idempotency_key: key });

describe("integration: the spend path's folded Redis round trips", function () {
  this.timeout(60_000);
  let redis: RedisGateway;

  beforeEach(() => {
    redis = liveGateway();
  });
  afterEach(async () => {
    await redis.close();
  });

  it("when a spend succeeds, then the lock is released and the cache holds its version; over the limit, then the spend is refused, writes nothing and takes no lock", async () => {
    const uid = newUid("path");
    await fund(uid, 100);
    const limiter = new RateLimiter(redis, { limit: 2, windowMs: 60_000, fallbackLimit: 2 });
    const deps = { db: db(), redis, limiter };

    const first = await spendAsUser(deps, uid, spendInput("a"));
    assert.equal(await redis.run((client) => client.exists(lockKeyOf(uid))), 0, "lock released");
    const cached = JSON.parse((await redis.run((client) => client.get(balanceKey(uid)))) ?? "null") as {
      version: number;
      available: number;
    };
    assert.deepEqual([cached.version, cached.available], [first.version, first.available]);

    await spendAsUser(deps, uid, spendInput("b"));
    const entriesBefore = (await ledgerOf(uid)).length;
    await assert.rejects(spendAsUser(deps, uid, spendInput("c")), (error: unknown) => {
      assert.ok(error instanceof RateLimited, String(error));
      return true;
    });
    assert.equal((await ledgerOf(uid)).length, entriesBefore, "a refused spend writes nothing");
    assert.equal(await redis.run((client) => client.exists(lockKeyOf(uid))), 0, "a refused spend takes no lock");
    await assertLedgerInvariants(uid);
  });

  it("when another holder has the user's lock, then the spend waits for it without counting against the limit again, and runs once it is released", async () => {
    const uid = newUid("path");
    await fund(uid, 100);
    const limiter = new RateLimiter(redis, { limit: 100, windowMs: 60_000, fallbackLimit: 100 });
    await redis.run((client) => client.set(lockKeyOf(uid), "someone-else", "PX", 30_000));

    const spending = spendAsUser({ db: db(), redis, limiter }, uid, spendInput("held"));
    // The first script ran (the limit counted once) and found the lock held: nothing spent yet.
    await waitFor("the gate's first try", async () => (await redis.run((c) => c.get(`rl:spend:${uid}`))) === "1");
    assert.equal((await ledgerOf(uid)).length, 1, "only the grant while the lock is held");
    assert.equal(await redis.run((client) => client.get(lockKeyOf(uid))), "someone-else");

    await redis.run((client) => client.del(lockKeyOf(uid)));
    const result = await spending;
    assert.equal(result.replayed, false);
    assert.equal(await redis.run((client) => client.get(`rl:spend:${uid}`)), "1", "the retries took the lock alone");
    assert.equal(await redis.run((client) => client.exists(lockKeyOf(uid))), 0, "lock released");
    const state = await assertLedgerInvariants(uid);
    assert.equal(state.entries, 2);
  });

  it("when a spend is replayed, then it answers the first result and does not put that older state into the cache", async () => {
    const uid = newUid("path");
    await fund(uid, 100);
    const limiter = new RateLimiter(redis, { limit: 100, windowMs: 60_000, fallbackLimit: 100 });
    const deps = { db: db(), redis, limiter };
    const first = await spendAsUser(deps, uid, spendInput("once"));
    const second = await spendAsUser(deps, uid, spendInput("twice"));
    const replay = await spendAsUser(deps, uid, spendInput("once"));
    assert.deepEqual([replay.replayed, replay.version], [true, first.version]);
    const cached = JSON.parse((await redis.run((client) => client.get(balanceKey(uid)))) ?? "null") as {
      version: number;
    };
    assert.equal(cached.version, second.version);
    assert.equal(await redis.run((client) => client.exists(lockKeyOf(uid))), 0, "lock released after a replay");
  });

  it("when Redis is down, then spends run unlocked on Firestore alone and the per-instance fallback limit refuses past its bound", async () => {
    const uid = newUid("path");
    await fund(uid, 100);
    const down = downGateway();
    try {
      const limiter = new RateLimiter(down, { limit: 100, windowMs: 60_000, fallbackLimit: 2 });
      const deps = { db: db(), redis: down, limiter };
      await spendAsUser(deps, uid, spendInput("d1"));
      await spendAsUser(deps, uid, spendInput("d2"));
      await assert.rejects(spendAsUser(deps, uid, spendInput("d3")), (error: unknown) => {
        assert.ok(error instanceof RateLimited, String(error));
        return true;
      });
      const state = await assertLedgerInvariants(uid);
      assert.equal(state.entries, 3, "the grant and the two spends the fallback allowed");
    } finally {
      await down.close();
    }
  });
});
