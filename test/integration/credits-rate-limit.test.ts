/** The spend rate limit with and without Redis (real redis-server; a gateway to nowhere for "down"). */
import assert from "node:assert/strict";
import { RateLimiter } from "../../functions/src/credits/rate-limit";
import { downRedisGateway as downGateway } from "../support/stores";
import { newUid } from "../support/suite";

async function allowedOf(limiter: RateLimiter, uid: string, tries: number): Promise<number> {
  let allowed = 0;
  for (let i = 0; i < tries; i += 1) if ((await limiter.check("spend", uid)).allowed) allowed += 1;
  return allowed;
}

describe("integration: spend rate limit without Redis", function () {
  this.timeout(30_000);

  it("when Redis is down, then each instance allows its configured fallback limit, so the bound is instances × that limit", async () => {
    const uid = newUid("rl");
    const window = { limit: 300, windowMs: 60_000, fallbackLimit: 4, now: () => 120_000 };
    const gateways = [downGateway(), downGateway()];
    try {
      const instances = gateways.map((gateway) => new RateLimiter(gateway, window));
      const allowed = await Promise.all(instances.map((limiter) => allowedOf(limiter, uid, 10)));
      assert.deepEqual(allowed, [4, 4]);
      const decision = await instances[0].check("spend", uid);
      assert.deepEqual([decision.allowed, decision.source], [false, "fallback"]);
    } finally {
      // A client left reconnecting to nowhere would keep mocha alive.
      await Promise.all(gateways.map((gateway) => gateway.close()));
    }
  });
});
