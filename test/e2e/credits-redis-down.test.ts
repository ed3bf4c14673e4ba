import assert from "node:assert/strict";
import { assertLedgerInvariants, fund } from "../support/credits";
import { callFunction, control, newUid } from "../support/suite";

describe("e2e: credits with Redis stopped mid-test", function () {
  this.timeout(180_000);
  after(() => control("redis/start"));

  it("when Redis stops between spends, then every spend is still applied exactly once and answers stay prompt", async () => {
    const uid = newUid();
    await fund(uid, 200);
    const spend = (key: string) =>
      callFunction<{ balance: number }>(
        "spendCredits",
        { feature: "chat.message", quantity: 2, idempotency_key: key },
        { uid },
      );
    for (let i = 0; i < 3; i++) assert.ok((await spend(`before-${i}`)).result);
    await control("redis/stop");
    const durations: number[] = [];
    for (let i = 0; i < 8; i++) {
      const started = performance.now();
      const answer = await spend(`during-${i}`);
      durations.push(performance.now() - started);
      assert.ok(answer.result, JSON.stringify(answer.error));
    }
    // Replays still replay with Redis gone (idempotency lives in Firestore).
    const replay = await spend("during-0");
    assert.equal((replay.result as { replayed?: boolean }).replayed, true);
    // Concurrent spends without the Redis lock: Firestore transactions alone keep them exact.
    const burst = await Promise.all(Array.from({ length: 5 }, (_, i) => spend(`burst-${i}`)));
    assert.ok(
      burst.every((answer) => answer.result),
      JSON.stringify(burst.map((answer) => answer.error)),
    );
    await control("redis/start");
    assert.ok((await spend("after-0")).result);
    const state = await assertLedgerInvariants(uid);
    assert.equal(state.balance, 200 - 2 * (3 + 8 + 5 + 1));
    // "Prompt" is a bound against hanging on reconnects (the Redis command timeout is 250 ms), not a speed claim.
    assert.ok(
      Math.max(...durations) < 15_000,
      `slowest spend with Redis down took ${Math.round(Math.max(...durations))} ms`,
    );
  });
});
