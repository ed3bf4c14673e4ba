/** Admin idempotency keys against the Firestore emulator: they belong to the target user, not to the admin. */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { grantCredits } from "../../functions/src/credits/operations";
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
});
