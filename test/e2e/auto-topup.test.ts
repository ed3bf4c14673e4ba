/**
 * Auto top-up end to end: the buyer saves a card on the stand-in's checkout
 * page, turns auto top-up on through the callable, spends below the
 * threshold, and the deployed trigger charges off-session while the stand-in
 * sends Stripe's events to the webhook on its own.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { assertLedgerInvariants, db, ledgerOf } from "../support/credits";
import { RETURN_URLS, sellTestPacks, TEST_PACKS } from "../support/payments";
import { callFunction, newUid, waitFor } from "../support/suite";

const STARTER = TEST_PACKS[0];

describe("e2e: auto top-up through the functions emulator", function () {
  this.timeout(400_000);

  before(() => sellTestPacks(db()));

  const setAutoTopUp = (uid: string, data: Record<string, unknown>) =>
    callFunction<Record<string, unknown>>("setAutoTopUp", data, { uid }, { timeoutMs: 180_000 });
  const valid = { enabled: true, threshold: 50, pack_id: STARTER.pack_id, monthly_cap: 1000 };

  it("when the input is bad or no card is saved, then setAutoTopUp refuses and writes nothing", async () => {
    const uid = newUid("e2e-refused");
    const unsigned = await callFunction("setAutoTopUp", valid, undefined, { timeoutMs: 180_000 });
    assert.equal(unsigned.error?.status, "UNAUTHENTICATED");
    for (const bad of [
      { ...valid, threshold: 2.5 },
      { ...valid, monthly_cap: 0 },
      { ...valid, pack_id: "no-such-pack" },
      { ...valid, extra: true },
    ]) {
      const answer = await setAutoTopUp(uid, bad);
      assert.equal(answer.error?.status, "INVALID_ARGUMENT", JSON.stringify(bad));
    }
    const answer = await setAutoTopUp(uid, valid);
    assert.equal(answer.error?.status, "FAILED_PRECONDITION");
    assert.deepEqual(answer.error?.details, { reason: "no-payment-method" });
    assert.equal((await db().collection("users").doc(uid).get()).exists, false);
  });

  it("when a saved card's owner spends below the threshold, then the trigger charges it and the pack lands once", async () => {
    const uid = newUid("e2e-topup");
    const checkout = await callFunction<{ session_id: string; url: string }>(
      "createCheckoutSession",
      { pack_id: STARTER.pack_id, idempotency_key: `e2e-${randomUUID()}`, ...RETURN_URLS, save_payment_method: true },
      { uid },
      { timeoutMs: 180_000 },
    );
    assert.ok(checkout.result, JSON.stringify(checkout.error));
    const page = await fetch(checkout.result.url, { signal: AbortSignal.timeout(120_000) });
    assert.equal(page.status, 200);
    await waitFor(
      "the card saved",
      async () => (await db().collection("users").doc(uid).get()).get("stripe_payment_method") as string | undefined,
      { timeoutMs: 120_000 },
    );

    const set = await setAutoTopUp(uid, valid);
    assert.deepEqual(set.result, valid, JSON.stringify(set.error));
    const spent = await callFunction(
      "spendCredits",
      { feature: "chat.message", quantity: 60, idempotency_key: `spend-${randomUUID()}` },
      { uid },
      { timeoutMs: 180_000 },
    );
    assert.ok(!spent.error, JSON.stringify(spent.error));

    const topUp = await waitFor(
      "the top-up succeeded",
      async () => {
        const found = await db().collection("topups").where("user_id", "==", uid).get();
        const doc = found.docs[0];
        return doc?.get("status") === "succeeded" ? doc : undefined;
      },
      { timeoutMs: 240_000 },
    );
    const purchases = (await ledgerOf(uid)).filter((entry) => entry.type === "purchase");
    assert.equal(purchases.length, 2, "the checkout and one top-up");
    const payment = (
      await db()
        .collection("payments")
        .doc(String(topUp.get("payment_id")))
        .get()
    ).data();
    assert.deepEqual(
      [payment?.status, payment?.kind, payment?.transaction_id],
      ["succeeded", "auto_topup", purchases[1].id],
    );
    const { balance } = await assertLedgerInvariants(uid);
    assert.equal(balance, STARTER.credits - 60 + STARTER.credits);
    const state = (await db().collection("users").doc(uid).get()).get("auto_topup") as Record<string, unknown>;
    assert.equal(state.pending_topup_id, null);
  });
});
