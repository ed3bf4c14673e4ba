/**
 * The offline operation queue: entries written to RTDB are applied once, and
 * the trigger delivered again, twice, or out of order changes nothing.
 */
import assert from "node:assert/strict";
import { realtimeDb } from "../../functions/src/adapters/firebase";
import { assertLedgerInvariants, fund, ledgerOf } from "../support/credits";
import { deliver, newUid, rtdbWrittenEvent, suite, waitFor } from "../support/suite";

interface Entry {
  status?: string;
  result?: { transaction_id: string; balance: number } | null;
  error?: { code: string; message: string } | null;
}

async function entry(uid: string, opId: string): Promise<Entry | null> {
  return (await realtimeDb().ref(`operation_queues/${uid}/${opId}`).once("value")).val() as Entry | null;
}

describe("e2e: offline operation queue (RTDB trigger)", function () {
  this.timeout(120_000);

  it("when a client queues a spend, then it is applied once and the outcome is written back", async () => {
    const uid = newUid();
    await fund(uid, 50);
    const op = { type: "spend", feature: "chat.message", quantity: 4, created_at: Date.now() };
    await realtimeDb().ref(`operation_queues/${uid}/op-1`).set(op);
    const done = await waitFor("queued op applied", async () => {
      const value = await entry(uid, "op-1");
      return value?.status ? value : undefined;
    });
    assert.equal(done.status, "applied");
    assert.equal(done.result?.balance, 46);
    assert.equal(done.result?.transaction_id, `${uid}_v2`);

    // The same event again, twice, and the older "created" event after the newer one: no further effect.
    const created = rtdbWrittenEvent(`operation_queues/${uid}/op-1`, null, op);
    const updated = rtdbWrittenEvent(`operation_queues/${uid}/op-1`, op, done);
    for (const event of [updated, created, created, updated]) {
      const { status } = await deliver(suite.functionsOrigin, "applyOperationQueue", event);
      assert.ok(status < 300, `delivery answered ${status}`);
    }
    const spends = (await ledgerOf(uid)).filter((e) => e.type === "spend");
    assert.equal(spends.length, 1);
    assert.deepEqual(await entry(uid, "op-1"), { ...done });
    await assertLedgerInvariants(uid);
  });

  it("when a queued spend cannot be paid or is malformed, then it is rejected with the error and nothing is charged", async () => {
    const uid = newUid();
    await fund(uid, 5);
    await realtimeDb()
      .ref(`operation_queues/${uid}/big`)
      .set({ type: "spend", feature: "image.generate", quantity: 1, created_at: Date.now() });
    // Written by the Admin SDK, so rules do not stop it: the function must.
    await realtimeDb()
      .ref(`operation_queues/${uid}/bad`)
      .set({ type: "spend", feature: "chat.message", quantity: -3, created_at: Date.now() });
    const big = await waitFor("rejected", async () =>
      (await entry(uid, "big"))?.status ? entry(uid, "big") : undefined,
    );
    const bad = await waitFor("rejected", async () =>
      (await entry(uid, "bad"))?.status ? entry(uid, "bad") : undefined,
    );
    assert.equal(big?.status, "rejected");
    assert.equal(big?.error?.code, "failed-precondition");
    assert.equal(bad?.status, "rejected");
    assert.equal(bad?.error?.code, "invalid-argument");
    const state = await assertLedgerInvariants(uid);
    assert.equal(state.balance, 5);
    assert.equal(state.entries, 1);
  });

  it("when a rejected queued spend's create event is delivered again after a top-up, then it stays rejected and nothing is spent", async () => {
    const uid = newUid();
    await fund(uid, 5);
    const op = { type: "spend", feature: "image.generate", quantity: 1, created_at: Date.now() };
    await realtimeDb().ref(`operation_queues/${uid}/late`).set(op);
    const rejected = await waitFor("rejected", async () =>
      (await entry(uid, "late"))?.status ? entry(uid, "late") : undefined,
    );
    assert.equal(rejected?.status, "rejected");
    await fund(uid, 100);
    const { status } = await deliver(
      suite.functionsOrigin,
      "applyOperationQueue",
      rtdbWrittenEvent(`operation_queues/${uid}/late`, null, op),
    );
    assert.ok(status < 300, `delivery answered ${status}`);
    assert.deepEqual(await entry(uid, "late"), rejected);
    assert.equal((await ledgerOf(uid)).filter((e) => e.type === "spend").length, 0);
    const state = await assertLedgerInvariants(uid);
    assert.equal(state.balance, 105);
  });
});
