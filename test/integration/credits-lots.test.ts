/** Credit lots in the ledger (issue 12), against the Firestore emulator through the credits use cases. */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { backfillLots, backfillUser } from "../../functions/src/credits/lot-backfill";
import { readAccount } from "../../functions/src/credits/ledger";
import { placeHold, settleHold } from "../../functions/src/credits/holds";
import { adjustCredits, listTransactions, refundCredits, spendCredits } from "../../functions/src/credits/operations";
import type { Clock } from "../../functions/src/shared/time";
import { assertLedgerInvariants, at, db, grantLot, lotsOf } from "../support/credits";
import { newUid } from "../support/suite";

const DAY = 86_400_000;

async function spend(uid: string, quantity: number, clock?: Clock, key = `spend-${randomUUID()}`) {
  return spendCredits({ db: db(), clock }, uid, { feature: "chat.message", quantity, idempotency_key: key });
}

async function entry(id: string) {
  const data = (await db().collection("credit_transactions").doc(id).get()).data() ?? {};
  return data as { allocations: Array<{ lot_id: string; amount: number }>; held_allocations: unknown[] };
}

async function lot(id: string): Promise<Record<string, unknown>> {
  return (await db().collection("credit_lots").doc(id).get()).data() ?? {};
}

async function hold(uid: string, holdId: string, amount: number, clock?: Clock) {
  return db().runTransaction(async (tx) => {
    const account = await readAccount(tx, db(), uid);
    return placeHold(
      tx,
      db(),
      account,
      {
        holdId,
        amount,
        expiresAt: new Date(Date.now() + 3_600_000),
        actor: "test",
        reason: "test hold",
        idempotencyKey: `hold:${holdId}`,
      },
      clock,
    );
  });
}

/** A user as they were before lots: a user document and a ledger without allocations, and an open hold. */
async function preLotsUser(uid: string, balance: number, held: number): Promise<void> {
  const now = new Date();
  const batch = db().batch();
  batch.set(db().collection("users").doc(uid), {
    credits_balance: balance,
    credits_held: held,
    ledger_version: held > 0 ? 2 : 1,
    tier: "free",
  });
  const base = { user_id: uid, idempotency_key: "old", actor: "admin:old", reason: "old", created_at: now };
  batch.set(db().collection("credit_transactions").doc(`${uid}_v1`), {
    ...base,
    type: "grant",
    amount: balance,
    held_delta: 0,
    balance_after: balance,
    held_after: 0,
    ledger_version: 1,
  });
  if (held > 0) {
    batch.set(db().collection("credit_transactions").doc(`${uid}_v2`), {
      ...base,
      type: "hold",
      amount: 0,
      held_delta: held,
      balance_after: balance,
      held_after: held,
      ledger_version: 2,
      hold_id: `${uid}-old-hold`,
    });
    batch.set(db().collection("credit_holds").doc(`${uid}-old-hold`), {
      user_id: uid,
      amount: held,
      status: "open",
      job_id: null,
      expires_at: new Date(Date.now() + DAY),
      placed_by: `${uid}_v2`,
    });
  }
  await batch.commit();
}

describe("integration: credit lots", () => {
  it("when credits are granted, then each addition is a lot, and equal source, priority and expiry share one", async () => {
    const uid = newUid();
    const expires = new Date(Date.now() + 10 * DAY).toISOString();
    const first = await grantLot(uid, 30, { source: "promo", expires_at: expires });
    const second = await grantLot(uid, 20, { source: "promo", expires_at: expires });
    const bought = await grantLot(uid, 100, { type: "purchase" });
    assert.equal(first.lot_id, second.lot_id);
    assert.notEqual(first.lot_id, bought.lot_id);
    const promo = await lot(first.lot_id);
    assert.deepEqual(
      [promo.source, promo.priority, promo.amount, promo.remaining, promo.status],
      ["promo", 20, 50, 50, "active"],
    );
    assert.equal((promo.expires_at as { toDate(): Date }).toDate().toISOString(), expires);
    const purchase = await lot(bought.lot_id);
    assert.deepEqual([purchase.source, purchase.priority, purchase.expires_at], ["purchase", 80, null]);
    assert.deepEqual((await entry(first.transaction_id)).allocations, [{ lot_id: first.lot_id, amount: 30 }]);
    await assertLedgerInvariants(uid);
  });

  it("when a grant's expiry is not in the future, then invalid-argument and nothing is written", async () => {
    const uid = newUid();
    await assert.rejects(grantLot(uid, 5, { expires_at: new Date(Date.now() - 1000).toISOString() }), {
      code: "invalid-argument",
    });
    assert.equal((await lotsOf(uid)).length, 0);
  });

  it("when credits are spent, then lots pay in burn order: priority, then earliest expiry (never last), then oldest", async () => {
    const uid = newUid();
    const soon = new Date(Date.now() + 2 * DAY).toISOString();
    const later = new Date(Date.now() + 9 * DAY).toISOString();
    const purchase = await grantLot(uid, 10, { type: "purchase" });
    const never = await grantLot(uid, 10);
    const grantLater = await grantLot(uid, 10, { expires_at: later });
    const grantSoon = await grantLot(uid, 10, { expires_at: soon });
    const promo = await grantLot(uid, 10, { source: "promo", expires_at: later });
    const spent = await spend(uid, 45);
    assert.deepEqual((await entry(spent.transaction_id)).allocations, [
      { lot_id: promo.lot_id, amount: 10 },
      { lot_id: grantSoon.lot_id, amount: 10 },
      { lot_id: grantLater.lot_id, amount: 10 },
      { lot_id: never.lot_id, amount: 10 },
      { lot_id: purchase.lot_id, amount: 5 },
    ]);
    assert.equal((await lot(promo.lot_id)).status, "exhausted");
    assert.equal((await lot(purchase.lot_id)).remaining, 5);
    const listed = await listTransactions({ db: db() }, uid, { limit: 1 });
    assert.equal(listed.items[0].allocations.length, 5);
    await assertLedgerInvariants(uid);
  });

  it("when a lot is past its expiry, then it never pays, even before it is expired", async () => {
    const uid = newUid();
    const now = Date.now();
    await grantLot(uid, 10, { source: "promo", expires_at: new Date(now + DAY).toISOString() }, at(now));
    const purchase = await grantLot(uid, 5, { type: "purchase" }, at(now));
    await assert.rejects(spend(uid, 6, at(now + 2 * DAY)), (error: Error & { code?: string; details?: object }) => {
      assert.equal(error.code, "failed-precondition");
      assert.deepEqual(error.details, { reason: "insufficient-credits", available: 5, required: 6 });
      return true;
    });
    const spent = await spend(uid, 5, at(now + 2 * DAY));
    assert.deepEqual((await entry(spent.transaction_id)).allocations, [{ lot_id: purchase.lot_id, amount: 5 }]);
    await assertLedgerInvariants(uid);
  });

  it("when a hold is captured, then it spends from the lots it reserved and releases the rest to them", async () => {
    const uid = newUid();
    const promo = await grantLot(uid, 10, { source: "promo" });
    const purchase = await grantLot(uid, 50, { type: "purchase" });
    await hold(uid, `${uid}-h`, 30);
    const heldLots = await Promise.all([lot(promo.lot_id), lot(purchase.lot_id)]);
    assert.deepEqual(
      heldLots.map((l) => l.held),
      [10, 20],
    );
    // Reserved credits are not spendable: 30 of 60 are left.
    await assert.rejects(spend(uid, 31), { code: "failed-precondition" });
    const spent = await spend(uid, 5);
    assert.deepEqual((await entry(spent.transaction_id)).allocations, [{ lot_id: purchase.lot_id, amount: 5 }]);
    const settled = await settleHold(db(), `${uid}-h`, { kind: "capture", cost: 12 }, "test", "done");
    const capture = await entry(settled.posted!.transaction_id);
    assert.deepEqual(capture.allocations, [
      { lot_id: promo.lot_id, amount: 10 },
      { lot_id: purchase.lot_id, amount: 2 },
    ]);
    assert.deepEqual(capture.held_allocations, [
      { lot_id: promo.lot_id, amount: 10 },
      { lot_id: purchase.lot_id, amount: 20 },
    ]);
    const after = await Promise.all([lot(promo.lot_id), lot(purchase.lot_id)]);
    assert.deepEqual(
      after.map((l) => [l.remaining, l.held, l.status]),
      [
        [0, 0, "exhausted"],
        [43, 0, "active"],
      ],
    );
    await assertLedgerInvariants(uid);
  });

  it("when a spend is refunded, then its credits go back to the lots it took them from, last-drawn first", async () => {
    const uid = newUid();
    const promo = await grantLot(uid, 10, { source: "promo" });
    const purchase = await grantLot(uid, 50, { type: "purchase" });
    const spent = await spend(uid, 16);
    const partial = await refundCredits({ db: db() }, "test-admin", {
      transaction_id: spent.transaction_id,
      amount: 4,
      reason: "partial",
      idempotency_key: `refund-${randomUUID()}`,
    });
    assert.deepEqual((await entry(partial.transaction_id)).allocations, [{ lot_id: purchase.lot_id, amount: 4 }]);
    const rest = await refundCredits({ db: db() }, "test-admin", {
      transaction_id: spent.transaction_id,
      reason: "rest",
      idempotency_key: `refund-${randomUUID()}`,
    });
    assert.deepEqual((await entry(rest.transaction_id)).allocations, [
      { lot_id: purchase.lot_id, amount: 2 },
      { lot_id: promo.lot_id, amount: 10 },
    ]);
    assert.deepEqual(
      [(await lot(promo.lot_id)).remaining, (await lot(promo.lot_id)).status, (await lot(purchase.lot_id)).remaining],
      [10, "active", 50],
    );
    await assertLedgerInvariants(uid);
  });

  it("when an admin adjusts, then a positive amount is an adjust lot and a negative one draws like a spend", async () => {
    const uid = newUid();
    const promo = await grantLot(uid, 10, { source: "promo" });
    const adjust = (amount: number) =>
      adjustCredits({ db: db() }, "test-admin", {
        user_id: uid,
        amount,
        reason: "correction",
        idempotency_key: `adjust-${randomUUID()}`,
      });
    const plus = await adjust(7);
    const [added] = (await entry(plus.transaction_id)).allocations;
    assert.deepEqual([(await lot(added.lot_id)).source, (await lot(added.lot_id)).priority], ["adjust", 50]);
    const minus = await adjust(-12);
    assert.deepEqual((await entry(minus.transaction_id)).allocations, [
      { lot_id: promo.lot_id, amount: 10 },
      { lot_id: added.lot_id, amount: 2 },
    ]);
    await assertLedgerInvariants(uid);
  });

  it("when a spend is replayed, then it returns the first answer and draws nothing again", async () => {
    const uid = newUid();
    await grantLot(uid, 20);
    const first = await spend(uid, 3, undefined, "same-key");
    const lotsBefore = JSON.stringify(await lotsOf(uid));
    const again = await spend(uid, 3, undefined, "same-key");
    assert.deepEqual([again.transaction_id, again.replayed], [first.transaction_id, true]);
    assert.equal(JSON.stringify(await lotsOf(uid)), lotsBefore);
    await assertLedgerInvariants(uid);
  });

  it("when a user has 205 one-credit lots of different expiries, then 150 can be spent at once, and more lots than the cap are refused", async () => {
    const uid = newUid();
    const base = Date.now() + 30 * DAY;
    for (let index = 0; index < 205; index += 1) {
      await grantLot(uid, 1, { expires_at: new Date(base + index * 60_000).toISOString() });
    }
    await assert.rejects(spend(uid, 201), (error: Error & { code?: string; details?: Record<string, unknown> }) => {
      assert.equal(error.code, "failed-precondition");
      assert.equal(error.details?.reason, "too-many-lots");
      return true;
    });
    const spent = await spend(uid, 150);
    const { allocations } = await entry(spent.transaction_id);
    assert.equal(allocations.length, 150);
    assert.equal(spent.balance, 55);
    await assertLedgerInvariants(uid);
  });

  it("when concurrent spends draw the same lots, then each credit is taken once", async () => {
    const uid = newUid();
    await grantLot(uid, 20, { source: "promo" });
    await grantLot(uid, 7, { type: "purchase" });
    const results = await Promise.allSettled(Array.from({ length: 12 }, () => spend(uid, 3)));
    const ok = results.filter((result) => result.status === "fulfilled").length;
    assert.equal(ok, 9);
    const state = await assertLedgerInvariants(uid);
    assert.equal(state.balance, 0);
  });

  it("when a user from before lots changes their credits, then a legacy lot takes over their balance and holds", async () => {
    const uid = newUid();
    await preLotsUser(uid, 40, 10);
    const spent = await spend(uid, 5);
    const legacyId = `${uid}_legacy_60_never`;
    assert.deepEqual((await entry(spent.transaction_id)).allocations, [{ lot_id: legacyId, amount: 5 }]);
    const legacy = await lot(legacyId);
    assert.deepEqual([legacy.source, legacy.amount, legacy.remaining, legacy.held], ["legacy", 40, 35, 10]);
    assert.equal((await db().collection("users").doc(uid).get()).get("lots_since_version"), 2);
    // The hold from before lots reserved from the legacy lot.
    await settleHold(db(), `${uid}-old-hold`, { kind: "release" }, "test", "old hold");
    assert.equal((await lot(legacyId)).held, 0);
    await assertLedgerInvariants(uid);
  });

  it("when the backfill runs twice, then each user from before lots has one legacy lot, and nothing changes the second time", async () => {
    const uids = [newUid("bf"), newUid("bf"), newUid("bf")];
    await preLotsUser(uids[0], 25, 0);
    await preLotsUser(uids[1], 30, 12);
    await grantLot(uids[2], 9);
    const pages: number[] = [];
    for (const uid of uids) assert.equal(await backfillUser(db(), uid), uid !== uids[2]);
    for (const uid of uids) assert.equal(await backfillUser(db(), uid), false);
    const legacy = await lot(`${uids[1]}_legacy_60_never`);
    assert.deepEqual([legacy.remaining, legacy.held], [30, 12]);
    const run = await backfillLots(db(), { pageSize: 50, onProgress: (progress) => pages.push(progress.scanned) });
    assert.equal(run.failed, 0);
    assert.ok(pages.length >= 1);
    for (const uid of uids) await assertLedgerInvariants(uid);
  });

  it("when the backfill races spends of a user from before lots, then exactly one legacy lot holds the balance", async () => {
    const uid = newUid();
    await preLotsUser(uid, 50, 0);
    const results = await Promise.allSettled([
      backfillUser(db(), uid),
      spend(uid, 4),
      backfillUser(db(), uid),
      spend(uid, 6),
    ]);
    assert.deepEqual(
      results.map((result) => result.status),
      ["fulfilled", "fulfilled", "fulfilled", "fulfilled"],
    );
    const lots = await lotsOf(uid);
    assert.equal(lots.length, 1);
    assert.deepEqual([lots[0].amount, lots[0].remaining], [50, 40]);
    await assertLedgerInvariants(uid);
  });
});
