/** The versioned balance cache against a real redis-server. */
import assert from "node:assert/strict";
import { RedisGateway } from "../../functions/src/adapters/redis";
import { BalanceCache, readThrough } from "../../functions/src/mirror/cache";
import { newUid, suite } from "../support/suite";

const state = (version: number) => ({ balance: 100 - version, held: 0, available: 100 - version, version });

describe("integration: balance cache in Redis", () => {
  let gateway: RedisGateway;
  before(() => {
    gateway = new RedisGateway({
      url: suite.redisUrl,
      commandTimeoutMs: 500,
      connectWaitMs: 1000,
      breaker: { failureThreshold: 3, cooldownMs: 1000 },
    });
  });
  after(() => gateway.close());

  it("when a slow reader fills an old version after the trigger stored a newer one, then the newer one stays (the invalidation race)", async () => {
    const uid = newUid();
    const cache = new BalanceCache(gateway);
    // Reader loaded v5 from Firestore; meanwhile v6 committed and the mirror trigger stored it.
    assert.equal(await cache.put(uid, state(6)), true);
    assert.equal(await cache.put(uid, state(5)), false, "the late fill of v5 is refused");
    assert.equal((await cache.get(uid))?.version, 6);
  });

  it("when the client has seen a newer version than the cache holds, then the cache is bypassed and refilled", async () => {
    const uid = newUid();
    const cache = new BalanceCache(gateway);
    await cache.put(uid, state(3));
    let loads = 0;
    const fromCache = await readThrough(cache, uid, 3, async () => (loads++, state(4)));
    assert.deepEqual([fromCache.version, fromCache.cached, loads], [3, true, 0]);
    const fresh = await readThrough(cache, uid, 4, async () => (loads++, state(4)));
    assert.deepEqual([fresh.version, fresh.cached, loads], [4, false, 1]);
    assert.equal((await cache.get(uid))?.version, 4);
  });

  it("when many fills of random versions race, then the cache ends at the highest version", async () => {
    const uid = newUid();
    const cache = new BalanceCache(gateway);
    const versions = Array.from({ length: 40 }, (_, i) => i + 1).sort(() => Math.random() - 0.5);
    await Promise.all(versions.map((version) => cache.put(uid, state(version))));
    assert.equal((await cache.get(uid))?.version, 40);
  });

  it("when Redis is disabled, then reads fall through to the loader and nothing throws", async () => {
    const cache = new BalanceCache(
      new RedisGateway({
        url: "",
        commandTimeoutMs: 100,
        connectWaitMs: 100,
        breaker: { failureThreshold: 1, cooldownMs: 100 },
      }),
    );
    const answer = await readThrough(cache, newUid(), 0, async () => state(1));
    assert.deepEqual([answer.version, answer.cached], [1, false]);
  });
});
