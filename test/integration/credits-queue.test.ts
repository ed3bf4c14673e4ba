/**
 * The offline queue's answers, through the use case against the Firestore
 * emulator and the RTDB substitute.
 */
import assert from "node:assert/strict";
import { realtimeDb } from "../../functions/src/adapters/firebase";
import { applyQueuedOperation } from "../../functions/src/credits/queue";
import { assertLedgerInvariants, db, fund, ledgerOf } from "../support/credits";
import { newUid } from "../support/suite";

describe("integration: offline queue answers are final", function () {
  this.timeout(60_000);

  it("when a rejected queued spend is delivered again after a top-up, then it stays rejected and nothing is spent", async () => {
    const uid = newUid("queue");
    await fund(uid, 5);
    const op = { type: "spend", feature: "image.generate", quantity: 1, created_at: Date.now() };
    const ref = realtimeDb().ref(`operation_queues/${uid}/op-1`);
    await ref.set(op);
    const deps = { db: db(), rtdb: realtimeDb() };
    assert.equal(await applyQueuedOperation(deps, uid, "op-1", op), "rejected");
    const answered = (await ref.once("value")).val() as { status: string; error: { code: string } };
    assert.equal(answered.status, "rejected");
    assert.equal(answered.error.code, "failed-precondition");

    await fund(uid, 100);
    // The original create event again (its snapshot has no status), then the write-back's event.
    assert.equal(await applyQueuedOperation(deps, uid, "op-1", op), "rejected");
    assert.equal(await applyQueuedOperation(deps, uid, "op-1", answered), "ignored");

    assert.deepEqual((await ref.once("value")).val(), answered);
    assert.equal((await ledgerOf(uid)).filter((e) => e.type === "spend").length, 0);
    const state = await assertLedgerInvariants(uid);
    assert.equal(state.balance, 105);
  });
});
