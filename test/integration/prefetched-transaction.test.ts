/**
 * The prefetched transaction of the allowance pass and of a spend's first try (credits/prefetched-transaction.ts)
 * against the Firestore emulator: a document written twice in one change is one guarded write, and what it leaves
 * is what the two writes would have left; a document read twice is guarded by its first read.
 */
import assert from "node:assert/strict";
import type { DocumentReference } from "firebase-admin/firestore";
import { firestoreValues } from "../../functions/src/adapters/firebase";
import { afterUpdate, NotRemembered } from "../../functions/src/credits/committed-state";
import { PrefetchedTransaction, UnsupportedWrite } from "../../functions/src/credits/prefetched-transaction";
import { SnapshotCache } from "../../functions/src/shared/read-ahead";
import { db } from "../support/credits";
import { newUid } from "../support/suite";

describe("integration: prefetched transaction", function () {
  this.timeout(60_000);

  const change = async (...refs: DocumentReference[]) => {
    const tx = new PrefetchedTransaction(new SnapshotCache((missing) => db().getAll(...missing)));
    await tx.asTransaction().getAll(...refs);
    return tx;
  };

  it("when a change writes a document twice, then the batch gets one write, guarded, and the document both fields", async () => {
    const { FieldValue } = firestoreValues();
    const user = db().collection("prefetched").doc(newUid("pt"));
    const record = db().collection("prefetched").doc(newUid("pt"));
    await user.set({ tier: "free" });
    const tx = await change(user, record);
    tx.asTransaction().set(user, { credits_balance: 50, updated_at: FieldValue.serverTimestamp() }, { merge: true });
    tx.asTransaction().set(record, { granted: 50 });
    tx.asTransaction().set(record, { lot_id: "lot-1" }, { merge: true });
    tx.asTransaction().set(user, { allowance_period: "2036-07" }, { merge: true });
    assert.equal(tx.writeCount, 2, "one write per document");
    const batch = db().batch();
    tx.commitInto(batch);
    await batch.commit();
    const written = (await user.get()).data() ?? {};
    assert.deepEqual([written.tier, written.credits_balance, written.allowance_period], ["free", 50, "2036-07"]);
    assert.ok(written.updated_at, "the server's time, folded");
    assert.deepEqual((await record.get()).data(), { granted: 50, lot_id: "lot-1" });

    // The guard is the first read's: a change since then fails the whole commit, folded fields and all.
    const stale = await change(user);
    stale.asTransaction().set(user, { credits_balance: 60 }, { merge: true });
    stale.asTransaction().set(user, { allowance_period: "2036-08" }, { merge: true });
    await user.update({ credits_balance: 55 });
    const refused = db().batch();
    stale.commitInto(refused);
    await assert.rejects(refused.commit());
    assert.deepEqual(
      [(await user.get()).get("credits_balance"), (await user.get()).get("allowance_period")],
      [55, "2036-07"],
    );
  });

  it("when a later write is a relative transform or a field path, then it is not folded and the change is refused", async () => {
    const { FieldValue } = firestoreValues();
    const user = db().collection("prefetched").doc(newUid("pt"));
    await user.set({ n: 1 });
    for (const later of [{ n: FieldValue.increment(1) }, { "a.b": 1 }, { n: FieldValue.delete() }]) {
      const tx = await change(user);
      tx.asTransaction().set(user, { n: 2 }, { merge: true });
      assert.throws(() => tx.asTransaction().update(user, later), UnsupportedWrite);
    }
  });

  it("when a query returns a document read before and since changed, then a write to it is guarded by the first read, whose values the change used", async () => {
    const collection = db().collection(newUid("ptq"));
    const lot = collection.doc("lot");
    await lot.set({ user_id: "u", remaining: 10 });
    const tx = new PrefetchedTransaction(new SnapshotCache((missing) => db().getAll(...missing)), { queries: true });
    const [first] = await tx.asTransaction().getAll(lot);
    await lot.update({ remaining: 7 });
    const found = await tx.asTransaction().get(collection.where("user_id", "==", "u"));
    assert.equal(found.docs[0].get("remaining"), 7, "the query sees the change");
    tx.asTransaction().update(lot, { remaining: Number(first.get("remaining")) - 1 });
    const batch = db().batch();
    tx.commitInto(batch);
    await assert.rejects(batch.commit(), "a write decided from the first read must not land over the change");
    assert.equal((await lot.get()).get("remaining"), 7);
  });
});

describe("integration: what a committed change leaves in memory (credits/committed-state.ts afterUpdate)", function () {
  this.timeout(60_000);

  it("when an update sets plain values, a date and the server's time, then the remembered document has them, and reading the server's time throws; a write whose result needs a read leaves nothing", async () => {
    const { FieldValue, Timestamp } = firestoreValues();
    const ref = db().collection("prefetched").doc(newUid("memory"));
    await ref.set({ tier: "free", auto_topup: { enabled: false }, n: 1 });
    const before = await ref.get();
    const at = Timestamp.fromMillis(Date.UTC(2036, 6, 1));
    const after = afterUpdate(
      before,
      { n: 2, note: null, list: [1, "a"], due: new Date(at.toMillis()), updated_at: FieldValue.serverTimestamp() },
      at,
    );
    assert.ok(after?.exists);
    const data = after.data() ?? {};
    const known = ["n", "note", "list", "tier", "auto_topup"].map((field): unknown => data[field]);
    assert.deepEqual(known, [2, null, [1, "a"], "free", { enabled: false }]);
    assert.ok(at.isEqual(data.due as typeof at), "a Date is kept as the Timestamp Firestore returns");
    assert.ok(after.updateTime?.isEqual(at));
    assert.throws(() => data.updated_at as unknown, NotRemembered);
    assert.throws(() => after.get("updated_at") as unknown, NotRemembered);
    assert.throws(() => ({ ...after.data() }), NotRemembered, "copying every field reads it too");
    assert.equal(after.get("auto_topup.enabled"), false);

    // Built on a remembered document, the next update keeps what the first left.
    const next = afterUpdate(after, { n: 3 }, at);
    assert.deepEqual([next?.get("n"), next?.get("note"), next?.get("tier")], [3, null, "free"]);
    assert.throws(() => next?.get("updated_at") as unknown, NotRemembered);

    for (const unknowable of [
      { n: FieldValue.increment(1) },
      { auto_topup: { enabled: true } },
      { "auto_topup.enabled": true },
      { n: undefined },
      { gone: FieldValue.delete() },
    ])
      assert.equal(afterUpdate(before, unknowable, at), undefined, JSON.stringify(Object.keys(unknowable)));
  });
});
