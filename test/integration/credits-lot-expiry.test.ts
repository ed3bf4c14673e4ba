/** Expiry of credit lots (issue 12), and the lot views, against the Firestore emulator. */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { firestoreValues } from "../../functions/src/adapters/firebase";
import { readAccount } from "../../functions/src/credits/ledger";
import { placeHold, settleHold } from "../../functions/src/credits/holds";
import {
  LOT_SUMMARY_MAX,
  expireDueLot,
  listLots,
  lotSummary,
  summaryCurrent,
} from "../../functions/src/credits/lot-views";
import { getBalance, refundCredits, spendCredits } from "../../functions/src/credits/operations";
import { expireHolds } from "../../functions/src/jobs/expiry";
import { DEFAULT_RETENTION, retentionPolicies } from "../../functions/src/retention/policies";
import { runTtlCleanup } from "../../functions/src/retention/runner";
import { assertLedgerInvariants, at, db, grantLot, ledgerOf } from "../support/credits";
import { newUid } from "../support/suite";

const DAY = 86_400_000;

async function hold(uid: string, holdId: string, amount: number) {
  return db().runTransaction(async (tx) => {
    const account = await readAccount(tx, db(), uid);
    return placeHold(tx, db(), account, {
      holdId,
      amount,
      expiresAt: new Date(Date.now() + 30 * DAY),
      actor: "test",
      reason: "job",
      idempotencyKey: `hold:${holdId}`,
    });
  });
}

async function lot(id: string): Promise<Record<string, unknown>> {
  return (await db().collection("credit_lots").doc(id).get()).data() ?? {};
}

const expiries = async (uid: string) =>
  (await ledgerOf(uid))
    .filter((entry) => entry.type === "expire")
    .map((entry) => [entry.amount, entry.reason, entry.lot_id]);

/** A user with a promo lot of 10 expiring in a day (burns first) and a purchase of 10 that never expires. */
async function promoAndPurchase(uid: string) {
  const expiresAt = Date.now() + DAY;
  const promo = await grantLot(uid, 10, { source: "promo", expires_at: new Date(expiresAt).toISOString() });
  const purchase = await grantLot(uid, 10, { type: "purchase" });
  return { expiresAt, promo: promo.lot_id, purchase: purchase.lot_id };
}

describe("integration: credit lot expiry", function () {
  this.timeout(120_000);

  it("when a lot passes its expiry, then its unheld credits expire with one entry, exactly once", async () => {
    const uid = newUid();
    const { expiresAt, promo } = await promoAndPurchase(uid);
    await spendCredits({ db: db() }, uid, { feature: "chat.message", quantity: 3, idempotency_key: "s1" });
    assert.deepEqual(await expireDueLot(db(), promo, at(expiresAt - 1)), { expired: false });
    const first = await expireDueLot(db(), promo, at(expiresAt + 1));
    assert.equal(first.expired, true);
    assert.deepEqual(await expireDueLot(db(), promo, at(expiresAt + 2)), { expired: false });
    assert.deepEqual(await expiries(uid), [[-7, "lot-expired", promo]]);
    const expired = await lot(promo);
    assert.deepEqual([expired.status, expired.remaining, expired.held], ["expired", 0, 0]);
    assert.equal((await getBalance({ db: db() }, uid)).balance, 10);
    await assertLedgerInvariants(uid);
  });

  it("when a lot expires under a hold, then the held part stays until the hold is released, and expires then", async () => {
    const uid = newUid();
    const { expiresAt, promo } = await promoAndPurchase(uid);
    await hold(uid, `${uid}-h`, 8);
    await expireDueLot(db(), promo, at(expiresAt + 1));
    assert.deepEqual(await expiries(uid), [[-2, "lot-expired", promo]]);
    const during = await lot(promo);
    assert.deepEqual([during.status, during.remaining, during.held], ["expired", 8, 8]);
    await settleHold(db(), `${uid}-h`, { kind: "release" }, "test", "job failed", at(expiresAt + 2));
    assert.deepEqual(await expiries(uid), [
      [-2, "lot-expired", promo],
      [-8, "lot-expired", promo],
    ]);
    const state = await assertLedgerInvariants(uid);
    assert.deepEqual([state.balance, state.held], [10, 0]);
  });

  it("when a held lot's expiry races the capture of its hold, then each credit is captured or expired exactly once", async () => {
    for (let round = 0; round < 4; round += 1) {
      const uid = newUid();
      const { expiresAt, promo } = await promoAndPurchase(uid);
      await hold(uid, `${uid}-h`, 8);
      const after = at(expiresAt + 1);
      const work = [
        () => expireDueLot(db(), promo, after),
        () => settleHold(db(), `${uid}-h`, { kind: "capture", cost: 5 }, "test", "done", after),
      ];
      await Promise.all(round % 2 === 0 ? work.map((run) => run()) : work.reverse().map((run) => run()));
      const state = await assertLedgerInvariants(uid);
      assert.deepEqual([state.balance, state.held], [10, 0]);
      const entries = await ledgerOf(uid);
      assert.equal(-Number(entries.find((entry) => entry.type === "capture")?.amount), 5);
      const expired = entries.filter((entry) => entry.type === "expire").reduce((sum, e) => sum - Number(e.amount), 0);
      assert.equal(expired, 5, "the 2 unheld and the 3 released expire, once");
      const settledLot = await lot(promo);
      assert.deepEqual([settledLot.status, settledLot.remaining], ["expired", 0]);
    }
  });

  it("when a lot's expiry races a refund into it and the release of a hold on it, then each credit expires exactly once", async () => {
    for (let round = 0; round < 4; round += 1) {
      const uid = newUid();
      const { expiresAt, promo } = await promoAndPurchase(uid);
      // The promo pays 4 of a spend and reserves 3 for a hold (a cancelled job's); 3 stay unheld.
      const spent = await spendCredits({ db: db() }, uid, {
        feature: "chat.message",
        quantity: 4,
        idempotency_key: "s",
      });
      await hold(uid, `${uid}-h`, 3);
      const after = at(expiresAt + 1);
      const work = [
        () => expireDueLot(db(), promo, after),
        () =>
          refundCredits({ db: db(), clock: after }, "test-admin", {
            transaction_id: spent.transaction_id,
            reason: "refund",
            idempotency_key: `r-${uid}`,
          }),
        () => settleHold(db(), `${uid}-h`, { kind: "release" }, "test", "cancelled", after),
      ];
      const order = round % 2 === 0 ? work : [...work].reverse();
      await Promise.all(order.map((run) => run()));
      const state = await assertLedgerInvariants(uid);
      assert.deepEqual([state.balance, state.held], [10, 0], "only the purchase is left");
      const expired = (await ledgerOf(uid))
        .filter((entry) => entry.type === "expire")
        .reduce((sum, entry) => sum - Number(entry.amount), 0);
      assert.equal(expired, 10, "the promo's 3 unheld, 4 refunded and 3 released credits expire, each once");
      const settledLot = await lot(promo);
      assert.deepEqual([settledLot.status, settledLot.remaining, settledLot.held], ["expired", 0, 0]);
    }
  });

  it("when a refund returns credits to a lot that has expired, then the returned part expires at once", async () => {
    const uid = newUid();
    const { expiresAt, promo, purchase } = await promoAndPurchase(uid);
    const spent = await spendCredits({ db: db() }, uid, {
      feature: "chat.message",
      quantity: 12,
      idempotency_key: "s",
    });
    // Spent to nothing, the lot is exhausted: there is nothing to expire.
    assert.deepEqual(await expireDueLot(db(), promo, at(expiresAt + 1)), { expired: false });
    assert.deepEqual(await expiries(uid), []);
    const refund = await refundCredits({ db: db(), clock: at(expiresAt + 2) }, "test-admin", {
      transaction_id: spent.transaction_id,
      reason: "refund",
      idempotency_key: `r-${randomUUID()}`,
    });
    assert.equal(refund.balance, 20);
    assert.deepEqual(await expiries(uid), [[-10, "lot-expired", promo]]);
    assert.deepEqual([(await lot(purchase)).remaining, (await lot(promo)).remaining], [10, 0]);
    await assertLedgerInvariants(uid);
  });

  it("when ttlCleanup runs, then its expired_lots policy expires every due lot once and leaves the others", async () => {
    const uids = [newUid(), newUid()];
    const lots = await Promise.all(uids.map((uid) => promoAndPurchase(uid)));
    const clock = at(Math.max(...lots.map((entry) => entry.expiresAt)) + 1);
    const policies = retentionPolicies(DEFAULT_RETENTION).filter((policy) => policy.name === "expired_lots");
    const run = () =>
      runTtlCleanup({
        db: db(),
        clock,
        policies,
        releaseExpiredHold: expireHolds(),
        budgetMs: 60_000,
        pageSize: 100,
        stateId: newUid("ttl-state"),
      });
    const first = await run();
    assert.equal(first.complete, true);
    await run();
    for (const [index, uid] of uids.entries()) {
      assert.deepEqual(await expiries(uid), [[-10, "lot-expired", lots[index].promo]]);
      assert.equal((await lot(lots[index].purchase)).status, "active");
      await assertLedgerInvariants(uid);
    }
  });

  it("when a user lists their lots and balance, then active lots come in burn order with the next expiry and sums by source", async () => {
    const uid = newUid();
    const soon = Date.now() + 2 * DAY;
    const purchase = await grantLot(uid, 40, { type: "purchase" });
    const promo = await grantLot(uid, 15, { source: "promo", expires_at: new Date(soon).toISOString() });
    const grantSoon = await grantLot(uid, 5, { expires_at: new Date(soon).toISOString() });
    const later = await grantLot(uid, 7, { expires_at: new Date(soon + DAY).toISOString() });
    await hold(uid, `${uid}-h`, 16); // promo 15, then 1 of the grant expiring with it
    const firstPage = await listLots(db(), uid, { status: "active", limit: 2 });
    assert.deepEqual(
      firstPage.items.map((item) => item.lot_id),
      [promo.lot_id, grantSoon.lot_id],
    );
    assert.ok(firstPage.next_cursor);
    const secondPage = await listLots(db(), uid, { status: "active", limit: 2, cursor: firstPage.next_cursor });
    assert.deepEqual(
      secondPage.items.map((item) => item.lot_id),
      [later.lot_id, purchase.lot_id],
    );
    assert.deepEqual(secondPage.items[1], {
      ...secondPage.items[1],
      source: "purchase",
      amount: 40,
      remaining: 40,
      held: 0,
      priority: 80,
      expires_at: null,
      status: "active",
    });
    assert.equal(firstPage.items[0].expires_at, new Date(soon).toISOString());
    const balance = await getBalance({ db: db() }, uid);
    assert.deepEqual(balance.lots, {
      count: 4,
      next_expiry: { amount: 4, at: soon },
      by_source: { purchase: 40, promo: 15, grant: 12 },
    });
    const other = await listLots(db(), newUid(), { status: "all", limit: 20 });
    assert.deepEqual(other.items, []);
  });

  it("when a lot is past its expiry but not expired yet, then the balance's lots summary leaves it out", async () => {
    const uid = newUid();
    const soon = Date.now() + DAY;
    await grantLot(uid, 30, { source: "promo", expires_at: new Date(soon).toISOString() });
    await grantLot(uid, 8, { expires_at: new Date(soon + DAY).toISOString() });
    await grantLot(uid, 5, { type: "purchase" });
    const before = await getBalance({ db: db() }, uid);
    assert.deepEqual(before.lots.next_expiry, { amount: 30, at: soon });
    // Past the promo's expiry, before ttlCleanup: it can no longer pay, so it is not counted.
    const after = await getBalance({ db: db(), clock: at(soon) }, uid);
    assert.equal(after.balance, 43, "the balance changes only with the expire entry");
    assert.deepEqual(after.lots, {
      count: 2,
      next_expiry: { amount: 8, at: soon + DAY },
      by_source: { grant: 8, purchase: 5 },
    });
    assert.equal(summaryCurrent(before.lots, soon - 1), true);
    assert.equal(summaryCurrent(before.lots, soon), false, "a cached summary is read again once its expiry passes");
  });

  it("when a user has more active lots than the summary reads, then the count stays exact and the summary says it is truncated", async () => {
    const uid = newUid();
    const base = Date.now() + 10 * DAY;
    const { Timestamp } = firestoreValues();
    const writer = db().bulkWriter();
    const lotAt = (id: string, expiresAt: number | null) =>
      void writer.set(db().collection("credit_lots").doc(`${uid}_${id}`), {
        user_id: uid,
        source: "grant",
        status: "active",
        remaining: 1,
        held: 0,
        expires_at: expiresAt === null ? null : Timestamp.fromMillis(expiresAt),
      });
    lotAt("never", null);
    lotAt("lapsed", Date.now() - DAY);
    for (let index = 0; index < LOT_SUMMARY_MAX + 4; index += 1) lotAt(`l${index}`, base + index * 60_000);
    await writer.close();
    const summary = await lotSummary(db(), uid);
    assert.equal(summary.truncated, true);
    assert.equal(summary.count, LOT_SUMMARY_MAX + 5, "every active lot still ahead of its expiry");
    assert.deepEqual(summary.next_expiry, { amount: 1, at: base }, "the earliest expiry is always read");
    assert.equal(summary.by_source.grant, LOT_SUMMARY_MAX - 1, "the lots read, the lapsed one left out");
    const under = newUid();
    await grantLot(under, 3, { expires_at: new Date(base).toISOString() });
    assert.equal((await lotSummary(db(), under)).truncated, undefined);
  });
});
