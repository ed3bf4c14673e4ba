/**
 * Payments' use cases against the Firestore emulator and a Stripe stand-in of
 * this test's own, reached through the official library.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createCheckoutSession } from "../../functions/src/payments/checkout";
import { loadCreditPacks } from "../../functions/src/payments/packs";
import { paymentIdFor, type Payment } from "../../functions/src/payments/payment";
import type { StripeClient } from "../../functions/src/payments/stripe-client";
import {
  applyStripeEvent,
  STRIPE_EVENTS,
  verifyStripeEvent,
  WebhookUnverified,
  type EventOutcome,
} from "../../functions/src/payments/webhook";
import type { StripeEventPayload, StripeStandin } from "../../scripts/harness/stripe-standin";
import { assertLedgerInvariants, db, ledgerOf } from "../support/credits";
import { openStripeStandin, RETURN_URLS, sellTestPacks, shuffled, sibling, TEST_PACKS } from "../support/payments";
import { newUid } from "../support/suite";

const SECRET_KEY = "sk_test_integration";
const WEBHOOK_SECRET = "whsec_integration";

describe("integration: payments (Stripe Checkout purchases)", function () {
  this.timeout(120_000);
  let standin: StripeStandin;
  let stripe: StripeClient;

  before(async () => {
    ({ standin, stripe } = await openStripeStandin(db(), { secretKey: SECRET_KEY, webhookSecret: WEBHOOK_SECRET }));
  });
  after(() => standin.close());

  const deps = () => ({ db: db(), stripe });
  const checkout = (uid: string, overrides: Record<string, unknown> = {}) =>
    createCheckoutSession(deps(), uid, {
      pack_id: "starter",
      idempotency_key: `checkout-${randomUUID()}`,
      ...RETURN_URLS,
      ...overrides,
    });
  const apply = (event: StripeEventPayload) => applyStripeEvent({ db: db() }, event);
  const paymentOf = async (sessionId: string) => {
    const found = await db().collection("payments").where("checkout_session_id", "==", sessionId).get();
    assert.equal(found.size, 1);
    return { id: found.docs[0].id, ...(found.docs[0].data() as Payment) };
  };
  const purchasesOf = async (uid: string) => (await ledgerOf(uid)).filter((entry) => entry.type === "purchase");

  describe("credit packs", () => {
    it("when config/credit_packs is valid, then its packs are on sale", async () => {
      assert.deepEqual(await loadCreditPacks(db()), TEST_PACKS);
    });

    it("when config/credit_packs is invalid, then nothing is sold (failed-precondition)", async () => {
      const ref = db().collection("config").doc("credit_packs");
      try {
        await ref.set({ packs: [TEST_PACKS[0], { ...TEST_PACKS[0], credits: -5 }] });
        await assert.rejects(loadCreditPacks(db()), { code: "failed-precondition" });
        await ref.set({ packs: [TEST_PACKS[0], TEST_PACKS[0]] });
        await assert.rejects(loadCreditPacks(db()), { code: "failed-precondition" });
      } finally {
        await sellTestPacks(db());
      }
    });
  });

  describe("createCheckoutSession", () => {
    it("when a user buys a pack, then a pending payment and a Stripe session with our metadata are recorded", async () => {
      const uid = newUid("buyer");
      const key = `checkout-${randomUUID()}`;
      const result = await checkout(uid, { idempotency_key: key });
      const paymentId = paymentIdFor(uid, key);
      const payment = (await db().collection("payments").doc(paymentId).get()).data() as Payment;
      assert.equal(payment.status, "pending");
      assert.deepEqual(
        [payment.user_id, payment.pack_id, payment.credits, payment.amount, payment.currency, payment.provider],
        [uid, "starter", 100, 500, "usd", "stripe"],
      );
      assert.equal(payment.checkout_session_id, result.session_id);
      assert.ok(payment.created_at);

      const session = standin.session(result.session_id);
      assert.ok(session);
      assert.equal(result.url, session.url);
      assert.deepEqual(
        [session.mode, session.client_reference_id, session.amount_total, session.currency],
        ["payment", uid, 500, "usd"],
      );
      assert.deepEqual(session.metadata, { user_id: uid, pack_id: "starter", payment_id: paymentId });
      const user = (await db().collection("users").doc(uid).get()).data();
      assert.equal(session.customer, user?.stripe_customer_id);

      const created = standin.requests().filter((r) => r.path === "/v1/checkout/sessions" && r.status === 200);
      const ours = created.find((r) => r.idempotencyKey === `checkout-${paymentId}`);
      assert.ok(ours, "Stripe's idempotency key derives from our payment id");
      assert.equal(
        (ours.params.payment_intent_data as Record<string, unknown> | undefined)?.setup_future_usage,
        undefined,
      );
    });

    it("when save_payment_method is asked for, then the payment intent is set up for off-session use", async () => {
      const uid = newUid("saver");
      const key = `checkout-${randomUUID()}`;
      await checkout(uid, { idempotency_key: key, save_payment_method: true });
      const sent = standin.requests().find((r) => r.idempotencyKey === `checkout-${paymentIdFor(uid, key)}`);
      assert.equal((sent?.params.payment_intent_data as Record<string, unknown>).setup_future_usage, "off_session");
    });

    it("when the same key is replayed, then the same session comes back; with other parameters it is already-exists", async () => {
      const uid = newUid("replay");
      const key = `checkout-${randomUUID()}`;
      const first = await checkout(uid, { idempotency_key: key });
      const again = await Promise.all([1, 2, 3].map(() => checkout(uid, { idempotency_key: key })));
      for (const result of again) assert.deepEqual(result, first);
      await assert.rejects(checkout(uid, { idempotency_key: key, pack_id: "pro" }), { code: "already-exists" });
      const sessions = standin
        .requests()
        .filter(
          (r) => r.path === "/v1/checkout/sessions" && (r.params.metadata as Record<string, string>)?.user_id === uid,
        );
      assert.ok(sessions.every((r) => r.idempotencyKey === sessions[0].idempotencyKey));
    });

    it("when the pack does not exist, then not-found and nothing is written", async () => {
      const uid = newUid("nopack");
      const key = `checkout-${randomUUID()}`;
      await assert.rejects(checkout(uid, { idempotency_key: key, pack_id: "nope" }), { code: "not-found" });
      assert.equal((await db().collection("payments").doc(paymentIdFor(uid, key)).get()).exists, false);
      assert.equal((await db().collection("users").doc(uid).get()).exists, false);
    });

    it("when two first purchases of a user run concurrently, then one Stripe customer is made and stored", async () => {
      const uid = newUid("race");
      const results = await Promise.all([checkout(uid), checkout(uid), checkout(uid, { pack_id: "pro" })]);
      const customers = standin
        .customers()
        .filter((customer) => (customer.metadata as Record<string, string>).user_id === uid);
      assert.equal(customers.length, 1);
      const stored = (await db().collection("users").doc(uid).get()).get("stripe_customer_id") as string;
      assert.equal(stored, customers[0].id);
      for (const result of results) assert.equal(standin.session(result.session_id)?.customer, stored);
    });
  });

  describe("applying webhook events", () => {
    it("when a paid checkout completes, then the pack's credits are granted once and the payment succeeds", async () => {
      const uid = newUid("paid");
      const { session_id } = await checkout(uid);
      const completed = standin.complete(session_id);
      assert.equal(await apply(completed), "granted");
      assert.equal(await apply(completed), "duplicate");

      const payment = await paymentOf(session_id);
      assert.equal(payment.status, "succeeded");
      assert.equal(payment.payment_intent, standin.session(session_id)?.payment_intent);
      const purchases = await purchasesOf(uid);
      assert.equal(purchases.length, 1);
      assert.equal(purchases[0].amount, 100);
      assert.equal(payment.transaction_id, purchases[0].id);
      const state = await assertLedgerInvariants(uid);
      assert.equal(state.balance, 100);

      const record = (await db().collection(STRIPE_EVENTS).doc(completed.id).get()).data();
      assert.equal(record?.outcome, "granted");
      const keptDays = ((record?.expire_at as { toMillis(): number }).toMillis() - Date.now()) / 86_400_000;
      assert.ok(keptDays > 29.9 && keptDays <= 30, `stripe_events kept 30 days, not ${keptDays}`);
    });

    it("when completed and async_payment_succeeded arrive concurrently, duplicated and in any order, then one grant", async () => {
      for (const seed of [1, 2, 3]) {
        const uid = newUid(`pair${seed}`);
        const { session_id } = await checkout(uid, { pack_id: "pro" });
        const completed = standin.complete(session_id);
        const succeeded = sibling(completed, "checkout.session.async_payment_succeeded", `evt_async_${randomUUID()}`);
        const deliveries = shuffled([completed, succeeded, completed, succeeded, completed], seed);
        const outcomes = await Promise.all(deliveries.map(apply));
        assert.equal(outcomes.filter((o) => o === "granted").length, 1, `seed ${seed}: ${outcomes.join()}`);
        assert.equal(outcomes.filter((o) => o === "already-granted").length, 1, `seed ${seed}: ${outcomes.join()}`);
        assert.equal(outcomes.filter((o) => o === "duplicate").length, 3);
        const purchases = await purchasesOf(uid);
        assert.deepEqual(
          purchases.map((entry) => entry.amount),
          [1200],
        );
        assert.equal((await assertLedgerInvariants(uid)).balance, 1200);
      }
    });

    it("when the session's metadata names another payment or user, or none, then the payment recorded for the session is applied", async () => {
      const [buyer, other] = [newUid("buyer"), newUid("other")];
      const bought = await checkout(buyer);
      const untouched = await checkout(other);
      const otherPayment = await paymentOf(untouched.session_id);
      const completed = standin.complete(bought.session_id);
      const object = completed.data.object;
      assert.equal((object.metadata as Record<string, string>).user_id, buyer, "the stand-in echoes our metadata");
      const withMetadata = (id: string, metadata: Record<string, string> | null) => ({
        ...completed,
        id: `evt_${id}_${randomUUID()}`,
        data: { object: { ...object, metadata } },
      });
      // Another user's payment; another user with the buyer's payment; no metadata at all.
      const misled = [
        withMetadata("other_payment", { user_id: other, pack_id: "starter", payment_id: otherPayment.id }),
        withMetadata("other_user", {
          user_id: other,
          pack_id: "starter",
          payment_id: (await paymentOf(bought.session_id)).id,
        }),
        withMetadata("none", null),
      ];
      const outcomes: EventOutcome[] = [];
      for (const event of misled) outcomes.push(await apply(event));
      assert.deepEqual(outcomes, ["granted", "already-granted", "already-granted"]);
      const payment = await paymentOf(bought.session_id);
      assert.equal(payment.status, "succeeded");
      for (const event of misled)
        assert.equal((await db().collection(STRIPE_EVENTS).doc(event.id).get()).get("payment_id"), payment.id);
      assert.equal((await paymentOf(untouched.session_id)).status, "pending");
      assert.equal((await assertLedgerInvariants(buyer)).balance, 100);
      assert.equal((await assertLedgerInvariants(other)).entries, 0);
    });

    it("when a delayed payment completes unpaid, then it stays pending until async_payment_succeeded grants it", async () => {
      const uid = newUid("delayed");
      const { session_id } = await checkout(uid);
      assert.equal(await apply(standin.complete(session_id, { paymentStatus: "unpaid" })), "pending");
      let payment = await paymentOf(session_id);
      assert.equal(payment.status, "pending");
      assert.ok(payment.payment_intent, "the payment intent is learnt from the completed session");
      assert.equal((await purchasesOf(uid)).length, 0);

      assert.equal(await apply(standin.asyncResult(session_id, "succeeded")), "granted");
      payment = await paymentOf(session_id);
      assert.equal(payment.status, "succeeded");
      assert.equal((await assertLedgerInvariants(uid)).balance, 100);
    });

    it("when the delayed payment fails, then the payment is failed and nothing is granted", async () => {
      const uid = newUid("failed");
      const { session_id } = await checkout(uid);
      await apply(standin.complete(session_id, { paymentStatus: "unpaid" }));
      assert.equal(await apply(standin.asyncResult(session_id, "failed")), "failed");
      assert.equal((await paymentOf(session_id)).status, "failed");
      assert.equal((await assertLedgerInvariants(uid)).entries, 0);
    });

    it("when the paid amount or currency is not the pack's, then nothing is granted", async () => {
      const uid = newUid("mismatch");
      const { session_id } = await checkout(uid);
      const completed = standin.complete(session_id);
      const cheaper = {
        ...completed,
        id: `evt_cheap_${randomUUID()}`,
        data: { object: { ...completed.data.object, amount_total: 1 } },
      };
      const euros = {
        ...completed,
        id: `evt_eur_${randomUUID()}`,
        data: { object: { ...completed.data.object, currency: "eur" } },
      };
      assert.equal(await apply(cheaper), "amount-mismatch");
      assert.equal(await apply(euros), "amount-mismatch");
      assert.equal((await paymentOf(session_id)).status, "pending");
      assert.equal((await assertLedgerInvariants(uid)).entries, 0);
    });

    it("when an event concerns a session we never created, or a type we do not act on, then 200 and nothing is written", async () => {
      const foreign = standin.event("checkout.session.completed", {
        id: `cs_test_foreign_${randomUUID()}`,
        object: "checkout.session",
        payment_status: "paid",
        amount_total: 500,
        currency: "usd",
        payment_intent: "pi_foreign",
        metadata: { user_id: "someone", pack_id: "starter", payment_id: "pay_forged" },
      });
      const other = standin.event("customer.created", { id: "cus_x", object: "customer" });
      const outcomes: EventOutcome[] = [await apply(foreign), await apply(other)];
      assert.deepEqual(outcomes, ["ignored", "ignored"]);
      for (const event of [foreign, other])
        assert.equal((await db().collection(STRIPE_EVENTS).doc(event.id).get()).exists, false);
      assert.equal((await db().collection("payments").doc("pay_forged").get()).exists, false);
    });
  });

  describe("verifying webhook signatures", () => {
    const body = (event: StripeEventPayload) => Buffer.from(JSON.stringify(event));

    it("when the signature is Stripe's for the raw body, then the event is returned", () => {
      const event = standin.event("customer.created", { id: "cus_1" });
      const raw = body(event);
      const verified = verifyStripeEvent(raw, standin.sign(raw.toString()), WEBHOOK_SECRET);
      assert.equal(verified.id, event.id);
    });

    it("when the signature is missing, forged, stale, for another body or another secret, then WebhookUnverified", () => {
      const event = standin.event("customer.created", { id: "cus_1" });
      const raw = body(event);
      const stale = Math.floor(Date.now() / 1000) - 600;
      const cases: Array<[string, Buffer | undefined, string | undefined]> = [
        ["missing", raw, undefined],
        ["forged", raw, `t=${Math.floor(Date.now() / 1000)},v1=${"0".repeat(64)}`],
        ["stale", raw, standin.sign(raw.toString(), { timestamp: stale })],
        ["other secret", raw, standin.sign(raw.toString(), { secret: "whsec_other" })],
        ["other body", Buffer.from(raw.toString().replace("cus_1", "cus_2")), standin.sign(raw.toString())],
        ["empty body", Buffer.alloc(0), standin.sign("")],
      ];
      for (const [name, payload, signature] of cases) {
        assert.throws(() => verifyStripeEvent(payload, signature, WEBHOOK_SECRET), WebhookUnverified, name);
      }
    });
  });
});
