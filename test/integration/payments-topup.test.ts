/**
 * Auto top-up against the Firestore emulator, MongoDB (notifications) and a
 * Stripe stand-in of this test's own, reached through the official library.
 *
 * The users live in a project no trigger watches: the test drives
 * chargeAutoTopUp's use case itself (twice, concurrently, in the bad order),
 * so the deployed trigger must not charge the same top-ups against the
 * harness's stand-in at the same time.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { grantCredits, spendCredits } from "../../functions/src/credits/operations";
import type { AutoTopUpState, TopUp } from "../../functions/src/credits/topup";
import {
  autoTopUpDisabledNotifier,
  CHARGE_WINDOW_MS,
  chargeTopUp,
  setAutoTopUp,
  topUpPaymentId,
} from "../../functions/src/payments/auto-topup";
import { createCheckoutSession } from "../../functions/src/payments/checkout";
import type { Payment } from "../../functions/src/payments/payment";
import { SetAutoTopUpInput } from "../../functions/src/payments/schemas";
import type { StripeClient } from "../../functions/src/payments/stripe-client";
import { applyStripeEvent } from "../../functions/src/payments/webhook";
import type { Clock } from "../../functions/src/shared/time";
import type { StripeEventPayload, StripeStandin } from "../../scripts/harness/stripe-standin";
import { assertLedgerInvariants, ledgerOf, lotsOf } from "../support/credits";
import { openStripeStandin, RETURN_URLS, TEST_PACKS } from "../support/payments";
import { fixedClock, mongo, unwatchedFirestore } from "../support/stores";
import { newUid } from "../support/suite";

const SECRET_KEY = "sk_test_topup";
const WEBHOOK_SECRET = "whsec_topup";
const STARTER = TEST_PACKS[0];
const PRO = TEST_PACKS[1];

describe("integration: auto top-up (saved card, ledger trigger, off-session charge)", function () {
  this.timeout(120_000);
  const store = unwatchedFirestore();
  let standin: StripeStandin;
  let stripe: StripeClient;

  before(async () => {
    ({ standin, stripe } = await openStripeStandin(store, { secretKey: SECRET_KEY, webhookSecret: WEBHOOK_SECRET }));
  });
  after(() => standin.close());

  const notifyDisabled = autoTopUpDisabledNotifier(async () => ({ mongo: await mongo() }));
  const deps = (clock?: Clock) => ({ db: store, stripe, clock, notifyDisabled });
  const apply = (event: StripeEventPayload) => applyStripeEvent(deps(), event);
  const userOf = async (uid: string) => (await store.collection("users").doc(uid).get()).data() ?? {};
  const stateOf = async (uid: string) => (await userOf(uid)).auto_topup as AutoTopUpState | undefined;
  const topUpsOf = async (uid: string) =>
    (await store.collection("topups").where("user_id", "==", uid).get()).docs
      .map((doc) => ({ id: doc.id, ...(doc.data() as TopUp) }))
      .sort((a, b) => a.ledger_version - b.ledger_version);
  const spend = (uid: string, credits: number, clock?: Clock) =>
    spendCredits({ db: store, clock }, uid, {
      feature: "chat.message",
      quantity: credits,
      idempotency_key: `spend-${randomUUID()}`,
    });
  const intentEvent = (type: string, paymentIntent: string) => {
    const found = standin.events().find((event) => event.type === type && event.data.object.id === paymentIntent);
    assert.ok(found, `the stand-in produced ${type} for ${paymentIntent}`);
    return found;
  };
  const intentsFor = (topupId: string) =>
    standin.paymentIntents().filter((intent) => (intent.metadata as Record<string, string>).topup_id === topupId);
  const notificationsOf = async (uid: string) =>
    (await mongo()).collection("notifications").countDocuments({ userId: uid, type: "auto_topup_disabled" });

  /** Buys the starter pack with save_payment_method, applying the events Stripe sends; returns the customer. */
  async function saveCard(uid: string): Promise<string> {
    const { session_id } = await createCheckoutSession({ db: store, stripe }, uid, {
      pack_id: STARTER.pack_id,
      idempotency_key: `checkout-${randomUUID()}`,
      ...RETURN_URLS,
      save_payment_method: true,
    });
    const completed = standin.complete(session_id);
    assert.equal(await apply(completed), "granted");
    assert.equal(
      await apply(intentEvent("payment_intent.succeeded", String(completed.data.object.payment_intent))),
      "payment-method-saved",
    );
    return String((await userOf(uid)).stripe_customer_id);
  }

  const enable = (uid: string, threshold: number, monthlyCap: number) =>
    setAutoTopUp(deps(), uid, { enabled: true, threshold, pack_id: STARTER.pack_id, monthly_cap: monthlyCap });

  /** Charges the top-up and applies what Stripe reports; returns the charge's outcome. */
  async function chargeAndReport(topupId: string) {
    const outcome = await chargeTopUp(deps(), topupId);
    const [intent] = intentsFor(topupId);
    assert.ok(intent, "a payment intent was created");
    const type = intent.status === "succeeded" ? "payment_intent.succeeded" : "payment_intent.payment_failed";
    const reported = await apply(intentEvent(type, String(intent.id)));
    return { outcome, reported, paymentIntent: String(intent.id) };
  }

  describe("saved payment method", () => {
    it("when a checkout saves the card, then payment_intent.succeeded stores it on the user from the event alone", async () => {
      const uid = newUid("saver");
      const { session_id } = await createCheckoutSession({ db: store, stripe }, uid, {
        pack_id: STARTER.pack_id,
        idempotency_key: `checkout-${randomUUID()}`,
        ...RETURN_URLS,
        save_payment_method: true,
      });
      const sent = standin
        .requests()
        .find(
          (request) =>
            request.path === "/v1/checkout/sessions" &&
            request.status === 200 &&
            (request.params.metadata as Record<string, string>).user_id === uid,
        );
      assert.equal((sent?.params.payment_intent_data as Record<string, unknown>).setup_future_usage, "off_session");
      const completed = standin.complete(session_id);
      const saved = intentEvent("payment_intent.succeeded", String(completed.data.object.payment_intent));
      assert.equal(saved.data.object.setup_future_usage, "off_session");

      const requestsBefore = standin.requests().length;
      // Reordered: the card's event before the session's.
      assert.equal(await apply(saved), "payment-method-saved");
      assert.equal(await apply(completed), "granted");
      assert.equal(await apply(saved), "duplicate");
      assert.equal(standin.requests().length, requestsBefore, "applying events never calls Stripe");
      const user = await userOf(uid);
      assert.equal(user.stripe_payment_method, saved.data.object.payment_method);
      assert.equal(user.stripe_customer_id, saved.data.object.customer);
      await assertLedgerInvariants(uid, store);
    });

    it("when a checkout did not ask to save the card, then its payment intent saves nothing", async () => {
      const uid = newUid("nosave");
      const { session_id } = await createCheckoutSession({ db: store, stripe }, uid, {
        pack_id: STARTER.pack_id,
        idempotency_key: `checkout-${randomUUID()}`,
        ...RETURN_URLS,
      });
      const completed = standin.complete(session_id);
      await apply(completed);
      assert.equal(
        await apply(intentEvent("payment_intent.succeeded", String(completed.data.object.payment_intent))),
        "ignored",
      );
      assert.equal((await userOf(uid)).stripe_payment_method, undefined);
      await assert.rejects(enable(uid, 50, 1000), {
        code: "failed-precondition",
        details: { reason: "no-payment-method" },
      });
    });
  });

  describe("setAutoTopUp", () => {
    it("when no payment method was saved, then it is failed-precondition no-payment-method and nothing is written", async () => {
      const uid = newUid("nocard");
      await grantCredits({ db: store }, "test-admin", {
        user_id: uid,
        amount: 100,
        type: "grant",
        reason: "test",
        idempotency_key: `fund-${uid}`,
      });
      const before = await userOf(uid);
      await assert.rejects(enable(uid, 50, 1000), {
        code: "failed-precondition",
        details: { reason: "no-payment-method" },
      });
      assert.deepEqual(await userOf(uid), before);
      await assert.rejects(enable(newUid("nobody"), 50, 1000), { code: "failed-precondition" });
    });

    it("when the input is bad, then it is invalid-argument and nothing is written", async () => {
      const uid = newUid("badinput");
      await saveCard(uid);
      const before = await userOf(uid);
      const valid = { enabled: true, threshold: 50, pack_id: STARTER.pack_id, monthly_cap: 1000 };
      for (const bad of [
        { ...valid, threshold: 1.5 },
        { ...valid, threshold: 0 },
        { ...valid, monthly_cap: -1 },
        { ...valid, monthly_cap: 1e12 },
        { ...valid, enabled: "yes" },
        { ...valid, pack_id: "no/slash" },
        { ...valid, credits_balance: 1e9 },
        { enabled: true, threshold: 50, pack_id: STARTER.pack_id },
      ])
        assert.equal(SetAutoTopUpInput.safeParse(bad).success, false, JSON.stringify(bad));
      await assert.rejects(setAutoTopUp(deps(), uid, { ...valid, pack_id: "no-such-pack" }), {
        code: "invalid-argument",
      });
      await assert.rejects(setAutoTopUp(deps(), uid, { ...valid, monthly_cap: STARTER.credits - 1 }), {
        code: "invalid-argument",
      });
      assert.deepEqual(await userOf(uid), before);
    });

    it("when the settings are valid, then they are stored with the pack and answered", async () => {
      const uid = newUid("settings");
      await saveCard(uid);
      const answer = await enable(uid, 50, 1000);
      assert.deepEqual(answer, { enabled: true, threshold: 50, pack_id: STARTER.pack_id, monthly_cap: 1000 });
      const state = await stateOf(uid);
      assert.deepEqual(
        [state?.credits, state?.amount, state?.currency, state?.pending_topup_id, state?.consecutive_failures],
        [STARTER.credits, STARTER.amount, STARTER.currency, null, 0],
      );
    });
  });

  describe("the trigger point", () => {
    it("when concurrent spends cross the threshold, then exactly one top-up is pending; a spend while it is pending starts none", async () => {
      for (let round = 0; round < 4; round++) {
        const uid = newUid("race");
        await saveCard(uid); // 100 credits
        await enable(uid, 50, 1000);
        await spend(uid, 40); // 60 available, above the threshold
        // Both read 60 and would each start a top-up; the ledger's user document makes the loser retry.
        const results = await Promise.all([spend(uid, 15), spend(uid, 15)]);
        assert.deepEqual(
          results.map((result) => result.replayed),
          [false, false],
        );
        const topUps = await topUpsOf(uid);
        assert.equal(topUps.length, 1, `round ${round}: one pending top-up`);
        const [topUp] = topUps;
        assert.equal(topUp.status, "pending");
        assert.equal(topUp.available_after, 45, "started by the change that crossed the threshold");
        assert.equal(topUp.id, `${uid}_${topUp.ledger_version}`);
        const crossing = (await ledgerOf(uid, store)).find((entry) => entry.ledger_version === topUp.ledger_version);
        assert.equal(crossing?.type, "spend");
        const state = await stateOf(uid);
        assert.equal(state?.pending_topup_id, topUp.id);
        assert.equal(state?.month_credits, STARTER.credits);

        await spend(uid, 10);
        assert.equal((await topUpsOf(uid)).length, 1, "none while one is pending");
        await assertLedgerInvariants(uid, store);
      }
    });

    it("when a change does not lower available credits below the threshold, then no top-up starts", async () => {
      const uid = newUid("above");
      await saveCard(uid);
      await enable(uid, 50, 1000);
      await spend(uid, 50); // exactly at the threshold: not below
      await grantCredits({ db: store }, "test-admin", {
        user_id: uid,
        amount: 5,
        type: "grant",
        reason: "test",
        idempotency_key: `grant-${uid}`,
      });
      assert.equal((await topUpsOf(uid)).length, 0);
      await assertLedgerInvariants(uid, store);
    });
  });

  describe("charging", () => {
    it("when the trigger runs twice for one top-up, then one PaymentIntent; its success redelivered and concurrent grants once", async () => {
      const uid = newUid("charge");
      await saveCard(uid);
      await enable(uid, 50, 1000);
      await spend(uid, 60);
      const [topUp] = await topUpsOf(uid);
      assert.ok(topUp);
      const user = await userOf(uid);

      // The trigger delivered twice at once, then once more.
      const outcomes = await Promise.all([chargeTopUp(deps(), topUp.id), chargeTopUp(deps(), topUp.id)]);
      assert.deepEqual(outcomes, ["charged", "charged"]);
      const creates = standin
        .requests()
        .filter((request) => request.path === "/v1/payment_intents" && request.idempotencyKey === topUp.id);
      assert.equal(creates.length, 2);
      assert.equal(creates.filter((request) => !request.replayed).length, 1, "the idempotency key is the top-up id");
      const intents = intentsFor(topUp.id);
      assert.equal(intents.length, 1);
      const [intent] = intents;
      assert.deepEqual(
        [intent.customer, intent.payment_method, intent.amount, intent.currency],
        [user.stripe_customer_id, user.stripe_payment_method, STARTER.amount, STARTER.currency],
      );
      const sent = creates[0].params;
      assert.deepEqual([sent.off_session, sent.confirm], ["true", "true"]);
      const paymentId = topUpPaymentId(uid, topUp.id);
      assert.deepEqual(intent.metadata, {
        user_id: uid,
        topup_id: topUp.id,
        payment_id: paymentId,
        pack_id: STARTER.pack_id,
      });

      const succeeded = intentEvent("payment_intent.succeeded", String(intent.id));
      const first = await Promise.all([
        apply(succeeded),
        apply(succeeded),
        apply({ ...succeeded, id: `${succeeded.id}_again` }),
      ]);
      assert.equal(first.filter((outcome) => outcome === "granted").length, 1, first.join());
      assert.equal(await apply(succeeded), "duplicate");
      assert.equal(await chargeTopUp(deps(), topUp.id), "settled");

      const purchases = (await ledgerOf(uid, store)).filter((entry) => entry.type === "purchase");
      assert.equal(purchases.length, 2, "the checkout and the top-up");
      assert.equal((purchases[1].metadata as Record<string, string>).payment_id, paymentId);
      const payment = (await store.collection("payments").doc(paymentId).get()).data() as Payment;
      assert.deepEqual(
        [payment.status, payment.kind, payment.topup_id, payment.payment_intent, payment.transaction_id],
        ["succeeded", "auto_topup", topUp.id, intent.id, purchases[1].id],
      );
      const [settled] = await topUpsOf(uid);
      assert.equal(settled.status, "succeeded");
      const state = await stateOf(uid);
      assert.deepEqual([state?.pending_topup_id, state?.consecutive_failures], [null, 0]);
      const { balance } = await assertLedgerInvariants(uid, store);
      assert.equal(balance, STARTER.credits - 60 + STARTER.credits);
    });

    it("when the pack has an expiry and a priority, then the top-up's credits land in a lot with them, as a checkout's would", async () => {
      const uid = newUid("prolot");
      await saveCard(uid);
      await setAutoTopUp(deps(), uid, { enabled: true, threshold: 50, pack_id: PRO.pack_id, monthly_cap: 5000 });
      await spend(uid, 60);
      const [topUp] = await topUpsOf(uid);
      assert.ok(topUp);
      const chargedAt = Date.now();
      const { reported } = await chargeAndReport(topUp.id);
      assert.equal(reported, "granted");
      const lot = (await lotsOf(uid, store)).find((candidate) => candidate.amount === PRO.credits);
      assert.ok(lot, "a lot of the pack's credits");
      assert.deepEqual([lot.source, lot.priority], ["purchase", PRO.priority]);
      // The pack's days after the grant, rounded up to the next UTC midnight (purchaseLot).
      const expiresAt = (lot.expires_at as { toMillis(): number } | null)?.toMillis() ?? null;
      const days = (PRO.expires_after_days ?? 0) * 86_400_000;
      assert.ok(expiresAt !== null && expiresAt >= chargedAt + days && expiresAt <= Date.now() + days + 86_400_000);
      assert.equal(expiresAt % 86_400_000, 0, "at a UTC midnight");
      await assertLedgerInvariants(uid, store);
    });

    it("when the trigger first runs after the charge window, then no PaymentIntent is made and the top-up fails uncounted; one already made is left to its event", async () => {
      const late = fixedClock(new Date(Date.now() + CHARGE_WINDOW_MS + 60_000));
      const uid = newUid("late");
      await saveCard(uid);
      await enable(uid, 50, 1000);
      await spend(uid, 60);
      const [topUp] = await topUpsOf(uid);
      assert.equal(await chargeTopUp(deps(late), topUp.id), "not-charged");
      assert.deepEqual(intentsFor(topUp.id), [], "Stripe was not asked: its idempotency key may be forgotten");
      const [failed] = await topUpsOf(uid);
      assert.deepEqual([failed.status, failed.failure_reason], ["failed", "charge-window-passed"]);
      assert.equal((await stateOf(uid))?.consecutive_failures, 0, "not a decline");

      // A top-up whose PaymentIntent was made in time, retried late: left pending for Stripe's event.
      const other = newUid("late-made");
      await saveCard(other);
      await enable(other, 50, 1000);
      await spend(other, 60);
      const [made] = await topUpsOf(other);
      assert.equal(await chargeTopUp(deps(), made.id), "charged");
      assert.equal(await chargeTopUp(deps(late), made.id), "charged");
      assert.equal(intentsFor(made.id).length, 1);
      assert.equal((await topUpsOf(other))[0].status, "pending");
      await assertLedgerInvariants(uid, store);
    });

    it("when the monthly cap would be exceeded, then no top-up starts; the next month it starts again", async () => {
      const uid = newUid("cap");
      await saveCard(uid);
      await enable(uid, 10_000, 250); // always below the threshold; two packs of 100 fit in 250
      const clock = fixedClock(new Date("2026-12-10T12:00:00Z"));
      for (const expected of [1, 2]) {
        await spend(uid, 1, clock);
        const topUps = await topUpsOf(uid);
        assert.equal(topUps.length, expected);
        const { reported } = await chargeAndReport(topUps[expected - 1].id);
        assert.equal(reported, "granted");
      }
      assert.equal((await stateOf(uid))?.month_credits, 200);
      await spend(uid, 1, clock); // a third pack would make 300 > 250
      clock.set(new Date("2026-12-31T23:59:59Z"));
      await spend(uid, 1, clock);
      assert.equal((await topUpsOf(uid)).length, 2, "the cap counts the month's top-ups");

      clock.set(new Date("2027-01-01T00:00:01Z"));
      await spend(uid, 1, clock);
      const topUps = await topUpsOf(uid);
      assert.equal(topUps.length, 3, "a new month, a new allowance");
      assert.equal(topUps[2].month, "2027-01");
      assert.deepEqual([(await stateOf(uid))?.month, (await stateOf(uid))?.month_credits], ["2027-01", 100]);
      await assertLedgerInvariants(uid, store);
    });

    it("when the card declines three times in a row, then auto top-up turns itself off and the user is told once; a success resets the count", async () => {
      const uid = newUid("decline");
      const customer = await saveCard(uid);
      await enable(uid, 10_000, 10_000);
      standin.declineCards(customer);

      const declineOnce = async (eventFirst: boolean) => {
        await spend(uid, 1);
        const topUps = await topUpsOf(uid);
        const latest = topUps[topUps.length - 1];
        assert.equal(latest.status, "pending");
        if (!eventFirst) {
          const { outcome, reported } = await chargeAndReport(latest.id);
          assert.deepEqual([outcome, reported], ["declined", "already-settled"]);
        } else {
          // The bad order: Stripe's payment_failed is applied before the trigger handles its card error.
          const reported: unknown[] = [];
          const eventFirst = {
            paymentIntents: {
              create: async (...args: Parameters<StripeClient["paymentIntents"]["create"]>) => {
                try {
                  return await stripe.paymentIntents.create(...args);
                } catch (error) {
                  const [intent] = intentsFor(latest.id);
                  reported.push(await apply(intentEvent("payment_intent.payment_failed", String(intent.id))));
                  throw error;
                }
              },
            },
          } as unknown as StripeClient;
          assert.equal(await chargeTopUp({ ...deps(), stripe: eventFirst }, latest.id), "declined");
          assert.deepEqual(reported, ["failed"]);
        }
        return latest.id;
      };

      await declineOnce(false);
      await declineOnce(true);
      assert.equal((await stateOf(uid))?.consecutive_failures, 2);
      standin.declineCards(customer, false);
      await spend(uid, 1);
      const success = (await topUpsOf(uid)).at(-1);
      assert.ok(success);
      assert.equal((await chargeAndReport(success.id)).reported, "granted");
      assert.equal((await stateOf(uid))?.consecutive_failures, 0, "a success resets the count");

      standin.declineCards(customer);
      await declineOnce(false);
      await declineOnce(true);
      assert.equal((await stateOf(uid))?.enabled, true, "two in a row are not three");
      const third = await declineOnce(false);
      const state = await stateOf(uid);
      assert.deepEqual(
        [state?.enabled, state?.disabled_reason, state?.consecutive_failures, state?.pending_topup_id],
        [false, "consecutive-failures", 3, null],
      );
      assert.equal(state?.month_credits, STARTER.credits, "failed top-ups leave the cap; the succeeded one stays");
      assert.equal(await notificationsOf(uid), 1);
      // The failure reported again (a redelivery, a retried trigger) tells nobody twice.
      const [intent] = intentsFor(third);
      assert.equal(await apply(intentEvent("payment_intent.payment_failed", String(intent.id))), "duplicate");
      assert.equal(await chargeTopUp(deps(), third), "settled");
      assert.equal(await notificationsOf(uid), 1);

      const count = (await topUpsOf(uid)).length;
      await spend(uid, 1);
      assert.equal((await topUpsOf(uid)).length, count, "off: no more top-ups");
      const failed = (await topUpsOf(uid)).filter((topUp) => topUp.status === "failed");
      assert.equal(failed.length, 5);
      for (const topUp of failed) {
        const payment = (await store.collection("payments").doc(topUpPaymentId(uid, topUp.id)).get()).data() as Payment;
        assert.equal(payment.status, "failed");
      }
      await assertLedgerInvariants(uid, store);
    });
  });
});
