/**
 * Refunds and disputes (issue 13): credits clawed back and reinstated by the
 * webhook's rules, debt and the negative-balance refusals, against the
 * Firestore emulator and a Stripe stand-in of this test's own.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { Timestamp } from "firebase-admin/firestore";
import { placeHold } from "../../functions/src/credits/holds";
import { readAccount, runCreditTransaction } from "../../functions/src/credits/ledger";
import { adjustCredits, getBalance, grantCredits, spendCredits } from "../../functions/src/credits/operations";
import { expireDueLot } from "../../functions/src/credits/lot-views";
import { balanceStateOf } from "../../functions/src/mirror/balance";
import { createJob } from "../../functions/src/jobs/create";
import { createCheckoutSession } from "../../functions/src/payments/checkout";
import type { Payment } from "../../functions/src/payments/payment";
import type { StripeClient } from "../../functions/src/payments/stripe-client";
import { applyStripeEvent, STRIPE_EVENTS, verifyStripeEvent } from "../../functions/src/payments/webhook";
import type { StripeEventPayload, StripeStandin } from "../../scripts/harness/stripe-standin";
import { assertLedgerInvariants, at, db, ledgerOf, lotsOf } from "../support/credits";
import { RETURN_URLS, openStripeStandin, shuffled, TEST_PACKS } from "../support/payments";
import { seededRandom } from "../support/random";
import { newUid } from "../support/suite";

const SECRET_KEY = "sk_test_refunds";
const WEBHOOK_SECRET = "whsec_refunds";
const STARTER = TEST_PACKS[0]; // 100 credits for 500

describe("integration: payments — refunds and disputes", function () {
  this.timeout(300_000);
  let standin: StripeStandin;
  let stripe: StripeClient;

  before(async () => {
    ({ standin, stripe } = await openStripeStandin(db(), { secretKey: SECRET_KEY, webhookSecret: WEBHOOK_SECRET }));
  });
  after(() => standin.close());

  const apply = (event: StripeEventPayload) => applyStripeEvent({ db: db() }, event);

  /** A paid, granted checkout of `packId` for `uid`: its payment id and payment intent. */
  async function buy(uid: string, packId = "starter"): Promise<{ paymentId: string; paymentIntent: string }> {
    const { paymentId, paymentIntent, completed } = await pay(uid, packId);
    assert.equal(await apply(completed), "granted");
    return { paymentId, paymentIntent };
  }

  /** A checkout of `packId` paid at Stripe, its `checkout.session.completed` not delivered yet. */
  async function pay(
    uid: string,
    packId = "starter",
    paymentStatus: "paid" | "unpaid" = "paid",
  ): Promise<{ paymentId: string; paymentIntent: string; sessionId: string; completed: StripeEventPayload }> {
    const { session_id } = await createCheckoutSession({ db: db(), stripe }, uid, {
      pack_id: packId,
      idempotency_key: `checkout-${randomUUID()}`,
      ...RETURN_URLS,
    });
    const completed = standin.complete(session_id, { paymentStatus });
    const found = await db().collection("payments").where("checkout_session_id", "==", session_id).get();
    return {
      paymentId: found.docs[0].id,
      paymentIntent: String(standin.session(session_id)?.payment_intent),
      sessionId: session_id,
      completed,
    };
  }

  const paymentOf = async (paymentId: string) =>
    (await db().collection("payments").doc(paymentId).get()).data() as Payment;
  const entriesOf = async (uid: string, type: string) =>
    (await ledgerOf(uid)).filter((entry) => entry.type === type).map((entry) => Number(entry.amount));
  /** The same event as Stripe might deliver it again later: another id, another snapshot of the object. */
  const resent = (event: StripeEventPayload, object: Record<string, unknown>): StripeEventPayload => ({
    ...event,
    id: `evt_resent_${randomUUID()}`,
    data: { object: { ...event.data.object, ...object } },
  });
  const spend = (uid: string, quantity: number) =>
    spendCredits({ db: db() }, uid, { feature: "chat.message", quantity, idempotency_key: `spend-${randomUUID()}` });

  describe("charge.refunded", () => {
    it("when refunded in part, then again, then in full, then exactly the pack's credits are clawed back in total", async () => {
      const uid = newUid("refund");
      const { paymentId, paymentIntent } = await buy(uid);
      // floor(100 × 123 / 500) = 24, floor(100 × 301 / 500) = 60, then 100.
      assert.equal(await apply(standin.refund(paymentIntent, 123).event), "clawed-back");
      assert.equal((await assertLedgerInvariants(uid)).balance, 76);
      const second = standin.refund(paymentIntent, 178).event;
      assert.equal(await apply(second), "clawed-back");
      assert.equal(await apply(second), "duplicate");
      assert.equal((await assertLedgerInvariants(uid)).balance, 40);
      assert.equal(await apply(standin.refund(paymentIntent).event), "clawed-back");

      assert.deepEqual(await entriesOf(uid, "clawback"), [-24, -36, -40]);
      const state = await assertLedgerInvariants(uid);
      assert.equal(state.balance, 0);
      const payment = await paymentOf(paymentId);
      assert.equal(payment.refunded_amount, STARTER.amount);
      assert.equal(payment.clawed_back, STARTER.credits);
      assert.equal(payment.correction_ids?.length, 3);
      const clawbacks = (await ledgerOf(uid)).filter((entry) => entry.type === "clawback");
      for (const entry of clawbacks) assert.equal(entry.payment_id, paymentId);
    });

    it("when the library refunds through the stand-in's API, then charge.refunded is produced once per idempotency key", async () => {
      const uid = newUid("api");
      const { paymentIntent } = await buy(uid);
      const before = standin.events().length;
      const request = { payment_intent: paymentIntent, amount: 200 };
      const first = await stripe.refunds.create(request, { idempotencyKey: `refund-${uid}` });
      const again = await stripe.refunds.create(request, { idempotencyKey: `refund-${uid}` });
      assert.equal(again.id, first.id);
      assert.equal(first.amount, 200);
      const produced = standin.events().slice(before);
      assert.deepEqual(
        produced.map((event) => [event.type, event.data.object.amount_refunded]),
        [["charge.refunded", 200]],
      );
      await assert.rejects(stripe.refunds.create({ payment_intent: paymentIntent, amount: 301 }), {
        type: "StripeInvalidRequestError",
      });
      assert.equal(await apply(produced[0]), "clawed-back");
      assert.equal((await assertLedgerInvariants(uid)).balance, 60);
    });

    it("when a smaller cumulative amount arrives late, then it takes nothing", async () => {
      const uid = newUid("late");
      const { paymentIntent } = await buy(uid);
      const first = standin.refund(paymentIntent, 100).event;
      const second = standin.refund(paymentIntent, 200).event;
      assert.equal(await apply(second), "clawed-back"); // cumulative 300: 60 credits
      assert.equal(await apply(first), "unchanged"); // cumulative 100, older: nothing
      assert.equal(await apply(resent(second, { amount_refunded: 250 })), "unchanged");
      assert.deepEqual(await entriesOf(uid, "clawback"), [-60]);
      assert.equal((await assertLedgerInvariants(uid)).balance, 40);
    });

    it("when delivered signed through verification, then it applies as any event", async () => {
      const uid = newUid("signed");
      const { paymentIntent } = await buy(uid);
      const raw = Buffer.from(JSON.stringify(standin.refund(paymentIntent, 250).event));
      const verified = verifyStripeEvent(raw, standin.sign(raw.toString()), WEBHOOK_SECRET);
      assert.equal(await applyStripeEvent({ db: db() }, verified), "clawed-back");
      assert.equal((await assertLedgerInvariants(uid)).balance, 50);
    });

    it("when the payment intent is not one of our payments, then it is parked and changes no credits", async () => {
      const charge = { id: "ch_x", object: "charge", payment_intent: `pi_unknown_${randomUUID()}`, amount: 500 };
      const events = [
        standin.event("charge.refunded", { ...charge, amount_refunded: 500, currency: "usd" }),
        standin.event("charge.dispute.funds_withdrawn", {
          id: "dp_x",
          object: "dispute",
          payment_intent: charge.payment_intent,
          amount: 500,
          currency: "usd",
        }),
      ];
      for (const event of events) {
        assert.equal(await apply(event), "parked");
        assert.equal(await apply(event), "duplicate");
        const record = await db().collection(STRIPE_EVENTS).doc(event.id).get();
        assert.deepEqual([record.get("outcome"), record.get("payment_id"), record.get("credits")], ["parked", null, 0]);
      }
      const parked = await db().collection(STRIPE_EVENTS).doc(`payment_intent:${charge.payment_intent}`).get();
      assert.deepEqual(
        (parked.get("parked") as Array<{ event_id: string }>).map((entry) => entry.event_id),
        events.map((event) => event.id),
      );
      assert.equal(parked.get("payment_id"), null);
      assert.ok(parked.get("expire_at"), "kept only as long as the stripe_events records");
      const payments = await db().collection("payments").where("payment_intent", "==", charge.payment_intent).get();
      assert.equal(payments.size, 0);
    });
  });

  describe("a refund or dispute delivered before its checkout's events", () => {
    /** Checks the total rule for one payment: granted − clawed back + reinstated = `kept`. */
    async function assertKept(uid: string, paymentId: string, kept: number): Promise<void> {
      const entries = (await ledgerOf(uid)).filter((entry) => entry.type !== "spend");
      const sum = (type: string) =>
        entries.filter((entry) => entry.type === type).reduce((total, entry) => total + Number(entry.amount), 0);
      assert.equal(sum("purchase") + sum("clawback") + sum("reinstate"), kept);
      const payment = await paymentOf(paymentId);
      assert.equal(STARTER.credits - (payment.clawed_back ?? 0) + (payment.reinstated ?? 0), kept);
      for (const entry of entries.filter((entry) => entry.type === "clawback"))
        assert.equal(entry.payment_id, paymentId);
      await assertLedgerInvariants(uid);
    }

    it("when a partial refund comes first, then it is parked and the checkout grants the pack less what it lost", async () => {
      const uid = newUid("early-refund");
      const { paymentId, paymentIntent, completed } = await pay(uid);
      const refund = standin.refund(paymentIntent, 123).event; // 24 credits
      assert.equal(await apply(refund), "parked");
      assert.equal((await assertLedgerInvariants(uid)).balance, 0);
      assert.equal(await apply(refund), "duplicate");

      assert.equal(await apply(completed), "granted");
      assert.deepEqual(await entriesOf(uid, "purchase"), [100]);
      assert.deepEqual(await entriesOf(uid, "clawback"), [-24]);
      assert.equal((await assertLedgerInvariants(uid)).balance, 76);
      const payment = await paymentOf(paymentId);
      assert.deepEqual([payment.status, payment.refunded_amount, payment.clawed_back], ["succeeded", 123, 24]);
      assert.equal(payment.correction_ids?.length, 1);
      // Applied once: the redelivered checkout event and the refund are duplicates, and the rest of the refund
      // takes exactly what is left.
      assert.equal(await apply(completed), "duplicate");
      assert.equal(await apply(refund), "duplicate");
      assert.equal(await apply(standin.refund(paymentIntent).event), "clawed-back");
      await assertKept(uid, paymentId, 0);
    });

    it("when a dispute is withdrawn and reinstated before the checkout, then the grant keeps the pack", async () => {
      const uid = newUid("early-dispute");
      const { paymentId, paymentIntent, completed } = await pay(uid);
      const { dispute, event: withdrawn } = standin.dispute(paymentIntent);
      assert.equal(await apply(withdrawn), "parked");
      const withdrawnOnly = await pay(uid);
      assert.equal(await apply(standin.dispute(withdrawnOnly.paymentIntent).event), "parked");
      assert.equal(await apply(standin.reinstate(String(dispute.id))), "parked");

      assert.equal(await apply(completed), "granted");
      await assertKept(uid, paymentId, STARTER.credits);
      // The other payment's dispute is still withdrawn: granted and taken back at once, all of it.
      assert.equal(await apply(withdrawnOnly.completed), "granted");
      assert.deepEqual(await entriesOf(uid, "clawback"), [-100]);
      assert.equal((await assertLedgerInvariants(uid)).balance, STARTER.credits);
    });

    it("when the checkout completes unpaid, then a refund is learnt and the later async success grants net of it", async () => {
      const uid = newUid("early-async");
      const { paymentId, paymentIntent, sessionId, completed } = await pay(uid, "starter", "unpaid");
      const succeeded = standin.asyncResult(sessionId, "succeeded");
      assert.equal(await apply(standin.refund(paymentIntent, 250).event), "parked");
      assert.equal(await apply(completed), "pending");
      assert.equal((await paymentOf(paymentId)).refunded_amount, 250);
      assert.equal((await assertLedgerInvariants(uid)).balance, 0);
      assert.equal(await apply(succeeded), "granted");
      await assertKept(uid, paymentId, 50);
    });

    it("when the refund and the checkout race, then either order grants once and claws back once", async () => {
      for (const seed of [1, 2, 3, 4, 5, 6]) {
        const uid = newUid(`race${seed}`);
        const { paymentId, paymentIntent, completed } = await pay(uid);
        const refund = standin.refund(paymentIntent, 250).event; // 50 credits
        const { event: withdrawn } = standin.dispute(paymentIntent);
        const events = seed % 2 === 0 ? [refund, completed] : [completed, refund, withdrawn, completed];
        const outcomes = await Promise.all(shuffled(events, seed).map(apply));
        const kept = seed % 2 === 0 ? 50 : 0;
        await assertKept(uid, paymentId, kept);
        assert.deepEqual((await entriesOf(uid, "purchase")).length, 1, `seed ${seed}: ${outcomes.join()}`);
        // Whatever came first, every distinct event is recorded.
        for (const event of events) assert.ok((await db().collection(STRIPE_EVENTS).doc(event.id).get()).exists);
      }
    });
  });

  describe("pack lots: expires_after_days and priority", () => {
    const PRO = TEST_PACKS[1]; // 1200 credits for 5000, 365 days, priority 10
    const DAY = 86_400_000;
    const purchaseLotsOf = async (uid: string) =>
      (await lotsOf(uid)).filter((lot) => lot.source === "purchase").sort((a, b) => (a.id < b.id ? -1 : 1));

    it("when a pack has an expiry and a priority, then its purchase adds to that lot; the same day's purchases share it", async () => {
      const uid = newUid("packlot");
      const before = Date.now();
      await buy(uid, "pro");
      await buy(uid, "pro");
      await buy(uid, "starter");
      const after = Date.now();
      const [pro, starter] = await purchaseLotsOf(uid);
      // The end of the UTC day, 365 days after the grant.
      const expiry = (pro.expires_at as Timestamp).toMillis();
      assert.equal(expiry % DAY, 0);
      assert.ok(expiry >= before + 365 * DAY && expiry <= Math.ceil((after + 365 * DAY) / DAY) * DAY);
      assert.deepEqual(
        [pro.id, pro.priority, pro.amount, pro.remaining],
        [`${uid}_purchase_10_${expiry}`, 10, 2 * PRO.credits, 2 * PRO.credits],
      );
      assert.deepEqual(
        [starter.id, starter.priority, starter.expires_at, starter.amount],
        [`${uid}_purchase_80_never`, 80, null, STARTER.credits],
      );
      const purchases = (await ledgerOf(uid)).filter((entry) => entry.type === "purchase");
      assert.deepEqual(
        purchases.map((entry) => (entry.allocations as Array<{ lot_id: string }>).map((part) => part.lot_id)),
        [[pro.id], [pro.id], [starter.id]],
      );
      // Priority 10 burns before the never-expiring starter credits.
      const spent = await spend(uid, 5);
      const entry = (await ledgerOf(uid)).find((row) => row.id === spent.transaction_id);
      assert.deepEqual(entry?.allocations, [{ lot_id: pro.id, amount: 5 }]);
      await assertLedgerInvariants(uid);
    });

    it("when a purchase is refunded, then the clawback takes from the lot its purchase added to, before burn order", async () => {
      const uid = newUid("packclaw");
      const starterBuy = await buy(uid, "starter");
      const proBuy = await buy(uid, "pro");
      const [pro, starter] = await purchaseLotsOf(uid);
      // Burn order would take the pro lot (priority 10) first; the starter refund takes its own lot.
      assert.equal(await apply(standin.refund(starterBuy.paymentIntent).event), "clawed-back");
      assert.equal(await apply(standin.refund(proBuy.paymentIntent, 2500).event), "clawed-back"); // 600
      const clawbacks = (await ledgerOf(uid)).filter((entry) => entry.type === "clawback");
      assert.deepEqual(
        clawbacks.map((entry) => entry.allocations),
        [[{ lot_id: starter.id, amount: 100 }], [{ lot_id: pro.id, amount: 600 }]],
      );
      assert.equal((await assertLedgerInvariants(uid)).balance, 600);
    });

    it("when a purchase is refunded after its pack's lot lapsed but before retention expired it, then the clawback takes that lot's credits, not the user's others, and the lot has nothing left to expire", async () => {
      const uid = newUid("packlapsed");
      await buy(uid, "starter");
      const proBuy = await buy(uid, "pro");
      const [pro, starter] = await purchaseLotsOf(uid);
      const afterExpiry = at((pro.expires_at as Timestamp).toMillis() + DAY);
      const refunded = standin.refund(proBuy.paymentIntent).event;
      assert.equal(await applyStripeEvent({ db: db(), clock: afterExpiry }, refunded), "clawed-back");
      const clawback = (await ledgerOf(uid)).find((entry) => entry.type === "clawback");
      assert.deepEqual(clawback?.allocations, [{ lot_id: pro.id, amount: PRO.credits }]);
      assert.equal(clawback?.debt_delta ?? 0, 0, "no debt: the refunded credits were all still in their lot");
      const lots = new Map((await purchaseLotsOf(uid)).map((lot) => [lot.id, lot]));
      assert.deepEqual(
        [lots.get(pro.id)?.remaining, lots.get(pro.id)?.status, lots.get(starter.id)?.remaining],
        [0, "exhausted", STARTER.credits],
      );
      const state = await assertLedgerInvariants(uid);
      assert.deepEqual([state.balance, state.debt], [STARTER.credits, 0]);
    });

    it("when a refund finds the purchase spent and another lot past its expiry not yet expired, then the clawback takes from that lot before making debt, and its expiry leaves nothing below zero", async () => {
      const uid = newUid("lapsedother");
      const starterBuy = await buy(uid, "starter");
      await spend(uid, STARTER.credits); // the purchase's lot is empty
      const promo = await grantCredits({ db: db() }, "test-admin", {
        user_id: uid,
        amount: 150,
        type: "grant",
        source: "promo",
        expires_at: new Date(Date.now() + DAY).toISOString(),
        reason: "promo",
        idempotency_key: `promo-${uid}`,
      });
      const later = at(Date.now() + 2 * DAY);
      // Half of the starter pack's price back: 50 of its credits clawed back.
      const refunded = standin.refund(starterBuy.paymentIntent, STARTER.amount / 2).event;
      assert.equal(await applyStripeEvent({ db: db(), clock: later }, refunded), "clawed-back");
      const clawback = (await ledgerOf(uid)).find((entry) => entry.type === "clawback");
      assert.deepEqual(clawback?.allocations, [{ lot_id: promo.lot_id, amount: 50 }]);
      assert.equal(clawback?.debt_delta ?? 0, 0, "no debt beside credits still in a lot");
      await expireDueLot(db(), promo.lot_id, later);
      const state = await assertLedgerInvariants(uid);
      assert.deepEqual([state.balance, state.debt], [0, 0]);
    });

    it("when a dispute is won, then the credits go back to the pack's lot, and expire at once if it expired meanwhile", async () => {
      const uid = newUid("packwon");
      const { paymentIntent } = await buy(uid, "pro");
      const [pro] = await purchaseLotsOf(uid);
      const { dispute, event: withdrawn } = standin.dispute(paymentIntent);
      assert.equal(await apply(withdrawn), "clawed-back");
      assert.equal(await apply(standin.reinstate(String(dispute.id))), "reinstated");
      const reinstate = (await ledgerOf(uid)).find((entry) => entry.type === "reinstate");
      assert.deepEqual(reinstate?.allocations, [{ lot_id: pro.id, amount: PRO.credits }]);
      assert.equal((await assertLedgerInvariants(uid)).balance, PRO.credits);

      // Won only after the pack's lot expired: the credits return to it and expire with it.
      const late = newUid("packlate");
      const lateBuy = await buy(late, "pro");
      const [lateLot] = await purchaseLotsOf(late);
      const second = standin.dispute(lateBuy.paymentIntent);
      assert.equal(await apply(second.event), "clawed-back");
      const afterExpiry = at((lateLot.expires_at as Timestamp).toMillis() + DAY);
      const won = standin.reinstate(String(second.dispute.id));
      assert.equal(await applyStripeEvent({ db: db(), clock: afterExpiry }, won), "reinstated");
      const entries = await ledgerOf(late);
      assert.deepEqual(
        entries.slice(-2).map((entry) => [entry.type, entry.amount, entry.reason === "lot-expired"]),
        [
          ["reinstate", PRO.credits, false],
          ["expire", -PRO.credits, true],
        ],
      );
      assert.equal((await assertLedgerInvariants(late)).balance, 0);
    });
  });

  describe("disputes", () => {
    it("when funds are withdrawn, then what remains of the purchase is clawed back; reinstated gives exactly that back", async () => {
      const uid = newUid("dispute");
      const { paymentId, paymentIntent } = await buy(uid);
      assert.equal(await apply(standin.refund(paymentIntent, 100).event), "clawed-back"); // 20
      const { dispute, event: withdrawn } = standin.dispute(paymentIntent);
      assert.equal(await apply(withdrawn), "clawed-back");
      assert.deepEqual(await entriesOf(uid, "clawback"), [-20, -80]);
      assert.equal((await assertLedgerInvariants(uid)).balance, 0);

      assert.equal(await apply(standin.reinstate(String(dispute.id))), "reinstated");
      assert.deepEqual(await entriesOf(uid, "reinstate"), [80]);
      assert.equal((await assertLedgerInvariants(uid)).balance, 80);
      const payment = await paymentOf(paymentId);
      assert.deepEqual([payment.clawed_back, payment.reinstated], [100, 80]);
      assert.deepEqual(payment.disputes, { [String(dispute.id)]: "reinstated" });
    });

    it("when withdrawn and reinstated are duplicated, concurrent or reordered, then both orders end the same, each applied once", async () => {
      for (const order of ["withdrawn-first", "reinstated-first"] as const) {
        const uid = newUid(`order-${order}`);
        const { paymentIntent } = await buy(uid);
        const { dispute, event: withdrawn } = standin.dispute(paymentIntent);
        const reinstated = standin.reinstate(String(dispute.id));
        if (order === "withdrawn-first") {
          assert.equal(await apply(withdrawn), "clawed-back");
          assert.equal(await apply(reinstated), "reinstated");
        } else {
          // A reinstatement known first makes the later withdrawal a thing of the past: nothing moves.
          assert.equal(await apply(reinstated), "unchanged");
          assert.equal(await apply(withdrawn), "unchanged");
        }
        const again = await Promise.all([withdrawn, reinstated, withdrawn, reinstated].map(apply));
        assert.deepEqual(again, ["duplicate", "duplicate", "duplicate", "duplicate"]);
        const state = await assertLedgerInvariants(uid);
        assert.equal(state.balance, STARTER.credits, order);
      }
      for (const seed of [1, 2, 3, 4]) {
        const uid = newUid(`concurrent${seed}`);
        const { paymentIntent } = await buy(uid);
        const { dispute, event: withdrawn } = standin.dispute(paymentIntent);
        const reinstated = standin.reinstate(String(dispute.id));
        const refund = standin.refund(paymentIntent, 250).event;
        const outcomes = await Promise.all(
          shuffled([withdrawn, reinstated, refund, withdrawn, refund], seed).map(apply),
        );
        assert.equal(outcomes.filter((outcome) => outcome === "duplicate").length, 2, outcomes.join());
        // Net: the dispute was won, half the money refunded.
        const state = await assertLedgerInvariants(uid);
        assert.equal(state.balance, 50, `seed ${seed}: ${outcomes.join()}`);
      }
    });
  });

  describe("debt and the negative-balance refusals", () => {
    it("when a clawback finds too little, then the rest is debt; draws are refused until a purchase pays it", async () => {
      const uid = newUid("debt");
      await grantCredits({ db: db() }, "admin", {
        user_id: uid,
        amount: 30,
        type: "grant",
        reason: "promo",
        source: "promo",
        idempotency_key: `grant-${randomUUID()}`,
      });
      const { paymentIntent } = await buy(uid); // 30 promo + 100 purchased
      await spend(uid, 90); // promo 30 burns first, then 60 purchased: 40 left, in the purchase lot
      const job = await createJob({ db: db() }, uid, {
        type: "podcast",
        input: { topic: "Held through a clawback", duration_min: 4 },
        idempotency_key: `job-${randomUUID()}`,
      }); // holds 20 of the 40
      const { event } = standin.dispute(paymentIntent);
      assert.equal(await apply(event), "clawed-back");
      const clawback = (await ledgerOf(uid)).find((entry) => entry.type === "clawback")!;
      assert.equal(clawback.amount, -100);
      assert.equal(clawback.debt_delta, 80, "20 unheld credits were found; the held 20 stay with the job");
      let state = await assertLedgerInvariants(uid);
      assert.deepEqual([state.balance, state.held, state.debt], [-60, 20, 80]);
      const user = (await db().collection("users").doc(uid).get()).data()!;
      assert.equal(user.credits_debt, 80);
      // getBalance and the RTDB mirror's state show it: Σ lots.remaining − debt = balance, available = balance − held.
      const shown = await getBalance({ db: db() }, uid);
      assert.deepEqual([shown.balance, shown.held, shown.available, shown.debt], [-60, 20, -80, 80]);
      const lotsRemaining = (await lotsOf(uid)).reduce((sum, lot) => sum + Number(lot.remaining), 0);
      assert.equal(lotsRemaining - shown.debt, shown.balance);
      assert.equal(balanceStateOf(user, 0)?.debt, 80);

      const refusedAt = (balance: number) => (error: unknown) => {
        const { code, details } = error as { code: string; details: Record<string, unknown> };
        assert.equal(code, "failed-precondition");
        assert.equal(details.reason, "negative-balance");
        assert.equal(details.balance, balance);
        return true;
      };
      const partial = refusedAt(-60);
      const before = JSON.stringify(await ledgerOf(uid));
      await assert.rejects(spend(uid, 1), partial);
      await assert.rejects(
        createJob({ db: db() }, uid, {
          type: "podcast",
          input: { topic: "Refused", duration_min: 1 },
          idempotency_key: `job-${randomUUID()}`,
        }),
        partial,
      );
      await assert.rejects(
        runCreditTransaction(db(), async (tx) => {
          const account = await readAccount(tx, db(), uid);
          return placeHold(tx, db(), account, {
            holdId: `hold-${randomUUID()}`,
            amount: 1,
            expiresAt: new Date(Date.now() + 60_000),
            actor: "test",
            reason: "refused",
            idempotencyKey: `hold-${randomUUID()}`,
          });
        }),
        partial,
      );
      await assert.rejects(
        adjustCredits({ db: db() }, "admin", {
          user_id: uid,
          amount: -1,
          reason: "refused",
          idempotency_key: `adj-${randomUUID()}`,
        }),
        partial,
      );
      assert.equal(JSON.stringify(await ledgerOf(uid)), before, "a refusal writes nothing");
      assert.ok(job.job_id);

      // A grant pays part of the debt and adds nothing to a lot.
      await grantCredits({ db: db() }, "admin", {
        user_id: uid,
        amount: 50,
        type: "grant",
        reason: "goodwill",
        idempotency_key: `grant-${randomUUID()}`,
      });
      state = await assertLedgerInvariants(uid);
      assert.deepEqual([state.balance, state.debt], [-10, 30]);
      await assert.rejects(spend(uid, 1), refusedAt(-10));

      // The next purchase settles the rest first; the remainder is spendable.
      await buy(uid);
      state = await assertLedgerInvariants(uid);
      assert.deepEqual([state.balance, state.debt], [90, 0]);
      const last = (await ledgerOf(uid)).at(-1)!;
      assert.deepEqual([last.type, last.debt_delta, last.debt_after], ["purchase", -30, 0]);
      await spend(uid, 70);
      assert.equal((await assertLedgerInvariants(uid)).balance, 20);
      assert.equal((await getBalance({ db: db() }, uid)).debt, 0, "paid: 0, not absent");
    });
  });

  describe("a seeded stream of purchases, refunds and disputes", () => {
    it("when shuffled, duplicated and applied concurrently, then granted − clawed back + reinstated = what the rules leave", async () => {
      for (const seed of [11, 12]) {
        const random = seededRandom(seed);
        const users = [newUid(`stream${seed}a`), newUid(`stream${seed}b`), newUid(`stream${seed}c`)];
        const events: StripeEventPayload[] = [];
        /** What each payment should leave, by the rules, once every event is in. */
        const expected = new Map<string, number>();
        for (let index = 0; index < 9; index++) {
          const uid = users[index % users.length];
          const pack = TEST_PACKS[Math.floor(random() * TEST_PACKS.length)];
          // The checkout's own event goes into the stream too: refunds and disputes may overtake it.
          const { paymentIntent, completed } = await pay(uid, pack.pack_id);
          events.push(completed);
          let refunded = 0;
          const refunds = Math.floor(random() * 3);
          for (let step = 0; step < refunds && refunded < pack.amount; step++) {
            const amount = 1 + Math.floor(random() * (pack.amount - refunded));
            refunded += amount;
            events.push(standin.refund(paymentIntent, amount).event);
          }
          let lost = false;
          if (random() < 0.5 && refunded < pack.amount) {
            const { dispute, event } = standin.dispute(paymentIntent);
            events.push(event);
            lost = true;
            if (random() < 0.5) {
              events.push(standin.reinstate(String(dispute.id)));
              lost = false;
            }
          }
          const kept = lost ? 0 : pack.credits - Math.floor((pack.credits * refunded) / pack.amount);
          expected.set(uid, (expected.get(uid) ?? 0) + kept);
        }
        const withDuplicates = [...events, ...events.filter(() => random() < 0.4)];
        const stream = shuffled(withDuplicates, seed);
        for (let start = 0; start < stream.length; start += 4)
          await Promise.all(stream.slice(start, start + 4).map(apply));

        for (const uid of users) {
          const purchased = (await entriesOf(uid, "purchase")).reduce((sum, amount) => sum + amount, 0);
          const clawed = (await entriesOf(uid, "clawback")).reduce((sum, amount) => sum - amount, 0);
          const reinstated = (await entriesOf(uid, "reinstate")).reduce((sum, amount) => sum + amount, 0);
          assert.equal(purchased - clawed + reinstated, expected.get(uid) ?? 0, `seed ${seed}, ${uid}`);
          await assertLedgerInvariants(uid);
        }
        // Every distinct event was recorded once.
        const distinct = new Set(events.map((event) => event.id));
        const records = await db().getAll(...[...distinct].map((id) => db().collection(STRIPE_EVENTS).doc(id)));
        assert.ok(records.every((record) => record.exists));
      }
    });
  });
});
