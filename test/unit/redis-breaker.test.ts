import assert from "node:assert/strict";
import { CircuitBreaker } from "../../functions/src/adapters/redis";

describe("unit: circuit breaker", () => {
  it("when failures reach the threshold, then it opens for the cooldown and closes after a success", () => {
    let now = 1_000;
    const breaker = new CircuitBreaker({ failureThreshold: 3, cooldownMs: 500 }, () => now);
    breaker.recordFailure();
    breaker.recordFailure();
    assert.equal(breaker.isOpen(), false, "two failures are under the threshold");
    breaker.recordFailure();
    assert.equal(breaker.isOpen(), true);
    now += 499;
    assert.equal(breaker.isOpen(), true, "still cooling down");
    now += 1;
    assert.equal(breaker.isOpen(), false, "half-open after the cooldown: one call may try");
    breaker.recordFailure();
    assert.equal(breaker.isOpen(), true, "a failed probe opens it again");
    now += 500;
    breaker.recordSuccess();
    breaker.recordFailure();
    assert.equal(breaker.isOpen(), false, "a success resets the count");
  });
});
