/**
 * The balance mirror's guarded write racing a user deletion, on Firestore and the RTDB substitute.
 *
 * The users live in a project no trigger watches: in the suite's own project the deployed
 * `mirrorUserBalance` handles the same documents' events concurrently, and a loaded run once read
 * its in-flight write (with a real `updated_at`) before that write's own check had undone it.
 */
import assert from "node:assert/strict";
import { realtimeDb, unwatchedFirestore as db } from "../support/stores";
import { grantCredits } from "../../functions/src/credits/operations";
import { balanceStateOf, mirrorBalance, withNextExpiry, type BalanceState } from "../../functions/src/mirror/balance";
import { newUid } from "../support/suite";

describe("integration: balance mirror against user deletion", function () {
  this.timeout(60_000);

  const state: BalanceState = { balance: 40, held: 0, available: 40, version: 1, updated_at: 1 };
  const mirrorOf = async (uid: string) =>
    (await realtimeDb().ref(`user_balances/${uid}`).once("value")).val() as BalanceState | null;

  it("when the user is deleted (and its mirror removal runs) between the first build's check and its write, then no mirror is left", async () => {
    const uid = newUid("mirror");
    const user = db().collection("users").doc(uid);
    await user.set({ credits_balance: 40, credits_held: 0, ledger_version: 1 });
    let interleaved = false;
    const deps = {
      rtdb: realtimeDb(),
      db: db(),
      userExists: async (id: string) => {
        const exists = (await db().collection("users").doc(id).get()).exists;
        if (!interleaved) {
          // Right after the first build saw the user: the user is deleted and the deletion's event is handled.
          interleaved = true;
          await user.delete();
          assert.equal(await mirrorBalance({ rtdb: realtimeDb(), db: db() }, uid, undefined), "removed");
        }
        return exists;
      },
    };

    const outcome = await mirrorBalance(deps, uid, state);

    assert.equal(interleaved, true);
    assert.equal(outcome, "removed");
    assert.equal(await mirrorOf(uid), null, "no mirror for a deleted user");
  });

  it("when the user has credits that expire, then the mirror carries the next expiry (epoch ms); without, none", async () => {
    const uid = newUid("mirror");
    const at = Date.now() + 5 * 86_400_000;
    await grantCredits({ db: db() }, "test-admin", {
      user_id: uid,
      amount: 30,
      type: "grant",
      source: "promo",
      expires_at: new Date(at).toISOString(),
      reason: "test",
      idempotency_key: `g-${uid}`,
    });
    const doc = (await db().collection("users").doc(uid).get()).data();
    const read = balanceStateOf(doc, 1);
    assert.ok(read);
    assert.equal(
      await mirrorBalance({ rtdb: realtimeDb(), db: db() }, uid, await withNextExpiry(db(), uid, read)),
      "written",
    );
    assert.deepEqual((await mirrorOf(uid))?.next_expiry, { amount: 30, at });
    const plain = newUid("mirror");
    await db().collection("users").doc(plain).set({ credits_balance: 0, credits_held: 0, ledger_version: 1 });
    await mirrorBalance({ rtdb: realtimeDb(), db: db() }, plain, await withNextExpiry(db(), plain, state));
    assert.equal((await mirrorOf(plain))?.next_expiry ?? null, null);
  });

  it("when the user still exists, then the first build writes the mirror", async () => {
    const uid = newUid("mirror");
    await db().collection("users").doc(uid).set({ credits_balance: 40, credits_held: 0, ledger_version: 1 });
    assert.equal(await mirrorBalance({ rtdb: realtimeDb(), db: db() }, uid, state), "written");
    assert.deepEqual(await mirrorOf(uid), state);
  });
});
