/** Admin idempotency keys against the Firestore emulator: they belong to the target user, not to the admin. */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { idempotencyRef } from "../../functions/src/credits/idempotency";
import { adjustCredits, grantCredits, refundCredits, spendCredits } from "../../functions/src/credits/operations";
import { assertLedgerInvariants, db } from "../support/credits";
import { newUid } from "../support/suite";

function grant(uid: string, amount: number, admin: string, key: string) {
  return grantCredits({ db: db() }, admin, {
    user_id: uid,
    amount,
    type: "grant",
    reason: "purchase",
    idempotency_key: key,
  });
}

describe("integration: admin idempotency keys belong to the target user", function () {
  this.timeout(60_000);

  it("when two admins process the same purchase with the same key, then it is granted once; other parameters are already-exists", async () => {
    const uid = newUid("purchase");
    const key = `purchase-${randomUUID()}`;
    const first = await grant(uid, 40, "admin-a", key);
    const second = await grant(uid, 40, "admin-b", key);
    assert.equal(second.replayed, true);
    assert.equal(second.transaction_id, first.transaction_id);
    await assert.rejects(grant(uid, 41, "admin-b", key), (error: Error & { code?: string }) => {
      assert.equal(error.code, "already-exists");
      return true;
    });
    // The same key for another user is that user's own grant.
    const other = newUid("purchase");
    assert.equal((await grant(other, 40, "admin-a", key)).replayed, false);
    const state = await assertLedgerInvariants(uid);
    assert.deepEqual([state.balance, state.entries], [40, 1]);
  });

  /**
   * The state a request answered before keys moved to the target user leaves: its effect, and its record under
   * the admin's own key space (`admin:{adminUid}`, the old owner), none under the user's.
   */
  async function recordedUnderFormerOwner(admin: string, key: string, uid: string): Promise<void> {
    const current = idempotencyRef(db(), { owner: `admin>${uid}`, key });
    const record = (await current.get()).data();
    assert.ok(record, "the first request recorded its answer");
    await idempotencyRef(db(), { owner: `admin:${admin}`, key }).set({ ...record, owner: `admin:${admin}` });
    await current.delete();
  }

  it("when a grant, adjustment or refund answered before the key space moved is retried after it, then the earlier answer is replayed and nothing is applied twice", async () => {
    const uid = newUid("migrated");
    const key = `purchase-${randomUUID()}`;
    const first = await grant(uid, 40, "admin-a", key);
    await recordedUnderFormerOwner("admin-a", key, uid);
    const retried = await grant(uid, 40, "admin-a", key);
    assert.equal(retried.replayed, true);
    assert.equal(retried.transaction_id, first.transaction_id);

    const adjustInput = { user_id: uid, amount: -3, reason: "correction", idempotency_key: `adj-${randomUUID()}` };
    const adjusted = await adjustCredits({ db: db() }, "admin-a", adjustInput);
    await recordedUnderFormerOwner("admin-a", adjustInput.idempotency_key, uid);
    const adjustedAgain = await adjustCredits({ db: db() }, "admin-a", adjustInput);
    assert.deepEqual([adjustedAgain.replayed, adjustedAgain.transaction_id], [true, adjusted.transaction_id]);

    const spent = await spendCredits({ db: db() }, uid, { feature: "chat.message", quantity: 5, idempotency_key: "s" });
    const refundInput = {
      transaction_id: spent.transaction_id,
      reason: "sorry",
      idempotency_key: `ref-${randomUUID()}`,
    };
    const refunded = await refundCredits({ db: db() }, "admin-a", refundInput);
    await recordedUnderFormerOwner("admin-a", refundInput.idempotency_key, uid);
    const refundedAgain = await refundCredits({ db: db() }, "admin-a", refundInput);
    assert.deepEqual([refundedAgain.replayed, refundedAgain.transaction_id], [true, refunded.transaction_id]);

    const state = await assertLedgerInvariants(uid);
    assert.deepEqual([state.balance, state.entries], [37, 4], "grant, adjust, spend, refund: each once");
    // The retries wrote no record under the user's key space: the former one stays the only answer (read only).
    assert.equal((await idempotencyRef(db(), { owner: `admin>${uid}`, key }).get()).exists, false);
  });

  it("when the admin's former key space holds the same key for another request (another user), then it is ignored: the new key space decides", async () => {
    const key = `shared-${randomUUID()}`;
    const before = newUid("before");
    await grant(before, 10, "admin-a", key);
    await recordedUnderFormerOwner("admin-a", key, before);
    const other = newUid("after");
    const granted = await grant(other, 10, "admin-a", key);
    assert.equal(granted.replayed, false);
    assert.deepEqual(
      [(await assertLedgerInvariants(other)).balance, (await assertLedgerInvariants(before)).balance],
      [10, 10],
    );
  });
});
