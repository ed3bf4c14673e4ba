/** The backfill command's use case: rebuilds mirrors from Firestore, idempotently, never going backwards. */
import assert from "node:assert/strict";
import { realtimeDb, unwatchedFirestore as db } from "../support/stores";
import { backfillMirrors } from "../../functions/src/mirror/backfill";
import { newUid } from "../support/suite";

describe("integration: mirror backfill", function () {
  this.timeout(60_000);

  it("when mirrors are missing or stale, then backfill rebuilds them; a second run writes nothing; a newer mirror is kept", async () => {
    const uids = Array.from({ length: 5 }, () => newUid("backfill"));
    // Documents written directly (as after an import), so no ledger: this test is about mirrors only.
    for (const [index, uid] of uids.entries()) {
      await db()
        .collection("users")
        .doc(uid)
        .set({ credits_balance: 100 + index, credits_held: index, ledger_version: 3 });
    }
    await realtimeDb()
      .ref(`user_balances/${uids[0]}`)
      .set({ balance: 1, held: 0, available: 1, version: 1, updated_at: 0 });
    await realtimeDb()
      .ref(`user_balances/${uids[1]}`)
      .set({ balance: 7, held: 0, available: 7, version: 9, updated_at: 0 });
    const progress: number[] = [];
    const first = await backfillMirrors(
      { db: db(), rtdb: realtimeDb() },
      { pageSize: 2, onProgress: (p) => progress.push(p.scanned) },
    );
    assert.ok(first.scanned >= 5);
    assert.ok(progress.length >= 3, "progress is reported per page");
    for (const [index, uid] of uids.entries()) {
      const mirror = (await realtimeDb().ref(`user_balances/${uid}`).once("value")).val() as {
        balance: number;
        held: number;
        available: number;
        version: number;
      };
      if (index === 1) assert.equal(mirror.version, 9, "a newer mirror is never replaced by an older state");
      else
        assert.deepEqual([mirror.balance, mirror.held, mirror.available, mirror.version], [100 + index, index, 100, 3]);
    }
    const second = await backfillMirrors({ db: db(), rtdb: realtimeDb() }, { pageSize: 2 });
    assert.equal(second.written, 0, "idempotent");
  });
});
