/**
 * Purchases end to end: the callables and the webhook through the functions
 * emulator, Stripe played by the harness's stand-in, events signed with the
 * library's own helper and delivered as Stripe would (and worse: duplicated,
 * concurrent, reordered, forged).
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import {
  deliverEvent,
  signStripePayload,
  stripeEvent,
  type StripeEventPayload,
} from "../../scripts/harness/stripe-standin";
import { assertLedgerInvariants, db, ledgerOf } from "../support/credits";
import {
  RETURN_URLS,
  sellTestPacks,
  shuffled,
  sibling,
  stripeStandin,
  TEST_PACKS,
  webhookUrl,
} from "../support/payments";
import { callFunction, newUid } from "../support/suite";

interface Checkout {
  session_id: string;
  url: string;
}

const checkout = (uid: string, data: Record<string, unknown> = {}) =>
  callFunction<Checkout>(
    "createCheckoutSession",
    { pack_id: "starter", idempotency_key: `e2e-${randomUUID()}`, ...RETURN_URLS, ...data },
    { uid },
    { timeoutMs: 180_000 },
  );

const deliver = (event: StripeEventPayload, signature?: string | null) =>
  deliverEvent(webhookUrl(), event, stripeStandin.webhookSecret, signature);

async function paymentOf(sessionId: string): Promise<Record<string, unknown>> {
  const found = await db().collection("payments").where("checkout_session_id", "==", sessionId).get();
  assert.equal(found.size, 1);
  return found.docs[0].data();
}

async function purchased(uid: string): Promise<number[]> {
  return (await ledgerOf(uid)).filter((entry) => entry.type === "purchase").map((entry) => Number(entry.amount));
}

/** A checkout made through the callable. */
async function newCheckout(uid: string, data: Record<string, unknown> = {}): Promise<Checkout> {
  const answer = await checkout(uid, data);
  assert.ok(answer.result, JSON.stringify(answer.error));
  return answer.result;
}

describe("e2e: Stripe purchases through the functions emulator", function () {
  this.timeout(400_000);

  before(() => sellTestPacks(db()));

  it("when listCreditPacks is called, then signed-in users get the packs and others unauthenticated", async () => {
    const anonymous = await callFunction("listCreditPacks", {}, undefined, { timeoutMs: 180_000 });
    assert.equal(anonymous.error?.status, "UNAUTHENTICATED");
    const answer = await callFunction<{ packs: unknown }>("listCreditPacks", {}, { uid: newUid() });
    assert.deepEqual(answer.result?.packs, TEST_PACKS);
  });

  it("when a user buys a pack and the signed completion arrives, then the credits land once", async () => {
    const uid = newUid("buyer");
    const { session_id, url } = await newCheckout(uid);
    assert.ok(url.startsWith(stripeStandin.url), url);
    const completed = await stripeStandin.complete(session_id);
    const first = await deliver(completed);
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.deepEqual(first.body, { received: true, outcome: "granted" });
    const again = await deliver(completed);
    assert.deepEqual([again.status, again.body], [200, { received: true, outcome: "duplicate" }]);

    const balance = await callFunction<{ balance: number }>("getBalance", {}, { uid });
    assert.equal(balance.result?.balance, 100);
    assert.equal((await paymentOf(session_id)).status, "succeeded");
    assert.deepEqual(await purchased(uid), [100]);
    await assertLedgerInvariants(uid);
  });

  it("when the buyer pays on the stand-in's checkout page, then its signed events reach the webhook and grant the pack", async () => {
    const uid = newUid("hosted");
    const { session_id, url } = await newCheckout(uid, { pack_id: "pro" });
    const page = await fetch(url, { signal: AbortSignal.timeout(120_000) });
    const body = (await page.json()) as { webhook: { status: number } | null };
    assert.equal(body.webhook?.status, 200);
    assert.equal((await paymentOf(session_id)).status, "succeeded");
    assert.deepEqual(await purchased(uid), [1200]);
  });

  it("when two first checkouts of a user race, then one Stripe customer is made and both sessions use it", async () => {
    const uid = newUid("race");
    const [a, b] = await Promise.all([newCheckout(uid), newCheckout(uid, { pack_id: "pro" })]);
    assert.notEqual(a.session_id, b.session_id);
    const customers = (await stripeStandin.customers()).filter((customer) => customer.metadata.user_id === uid);
    assert.equal(customers.length, 1);
    const stored = (await db().collection("users").doc(uid).get()).get("stripe_customer_id") as unknown;
    assert.equal(stored, customers[0].id);
  });

  it("when completed and async_payment_succeeded are delivered duplicated, shuffled and concurrently, then one grant", async () => {
    const uid = newUid("pair");
    const { session_id } = await newCheckout(uid);
    const completed = await stripeStandin.complete(session_id);
    const succeeded = sibling(completed, "checkout.session.async_payment_succeeded", `evt_e2e_${randomUUID()}`);
    const answers = await Promise.all(shuffled([completed, succeeded, completed, succeeded], 7).map((e) => deliver(e)));
    // A concurrent duplicate may be answered with a retryable status; it never applies twice.
    for (const answer of answers) assert.ok([200, 409, 500].includes(answer.status), JSON.stringify(answer));
    for (const event of [completed, succeeded]) await deliver(event); // Stripe's retries of any non-200
    assert.deepEqual(await purchased(uid), [100]);
    assert.equal((await paymentOf(session_id)).status, "succeeded");
    await assertLedgerInvariants(uid);
  });

  it("when one event is delivered three times at once, then it is applied once", async () => {
    const uid = newUid("dup");
    const { session_id } = await newCheckout(uid);
    const completed = await stripeStandin.complete(session_id);
    const answers = await Promise.all([1, 2, 3].map(() => deliver(completed)));
    const outcomes = answers.map((answer) => (answer.body as { outcome?: string }).outcome ?? answer.status);
    assert.equal(outcomes.filter((outcome) => outcome === "granted").length, 1, outcomes.join());
    assert.deepEqual(await purchased(uid), [100]);
    await assertLedgerInvariants(uid);
  });

  it("when a purchase is refunded in part and then disputed and won, then the webhook claws back, refuses spends in debt, and reinstates", async () => {
    const uid = newUid("refund");
    const { session_id } = await newCheckout(uid);
    const completed = await stripeStandin.complete(session_id);
    assert.equal((await deliver(completed)).status, 200);
    const paymentIntent = String(completed.data.object.payment_intent);
    const outcomeOf = async (event: StripeEventPayload) => {
      const answer = await deliver(event);
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      return (answer.body as { outcome: string }).outcome;
    };

    const refunded = await stripeStandin.refund(paymentIntent, 250);
    assert.equal(await outcomeOf(refunded), "clawed-back");
    assert.equal(await outcomeOf(refunded), "duplicate");
    const spent = await callFunction(
      "spendCredits",
      { feature: "chat.message", quantity: 30, idempotency_key: `e2e-${randomUUID()}` },
      { uid },
    );
    assert.ok(spent.result, JSON.stringify(spent.error));

    const withdrawn = await stripeStandin.dispute(paymentIntent);
    assert.equal(await outcomeOf(withdrawn), "clawed-back"); // 50 due, 20 found: 30 owed
    const refused = await callFunction(
      "spendCredits",
      { feature: "chat.message", quantity: 1, idempotency_key: `e2e-${randomUUID()}` },
      { uid },
    );
    assert.equal(refused.error?.status, "FAILED_PRECONDITION");
    assert.deepEqual(refused.error?.details, { reason: "negative-balance", balance: -30, available: -30, debt: 30 });
    type Shown = { balance: number; available: number; debt: number };
    const owing = await callFunction<Shown>("getBalance", {}, { uid });
    assert.deepEqual([owing.result?.balance, owing.result?.available, owing.result?.debt], [-30, -30, 30]);

    assert.equal(await outcomeOf(await stripeStandin.reinstate(String(withdrawn.data.object.id))), "reinstated");
    // The debt state read above is cached; the newest version the client knows of skips it.
    const version = (await ledgerOf(uid)).length;
    const balance = await callFunction<Shown>("getBalance", { min_version: version }, { uid });
    assert.deepEqual([balance.result?.balance, balance.result?.debt], [20, 0]);
    const types = (await ledgerOf(uid)).map((entry) => entry.type);
    assert.deepEqual(types, ["purchase", "clawback", "spend", "clawback", "reinstate"]);
    await assertLedgerInvariants(uid);
  });

  it("when a delayed payment completes unpaid and then fails, then the payment is pending, then failed, and nothing is granted", async () => {
    const uid = newUid("delayed");
    const { session_id } = await newCheckout(uid);
    const completed = await deliver(await stripeStandin.complete(session_id, "unpaid"));
    assert.deepEqual(completed.body, { received: true, outcome: "pending" });
    assert.equal((await paymentOf(session_id)).status, "pending");
    const failed = await deliver(await stripeStandin.asyncResult(session_id, "failed"));
    assert.deepEqual(failed.body, { received: true, outcome: "failed" });
    assert.equal((await paymentOf(session_id)).status, "failed");
    assert.deepEqual(await purchased(uid), []);
  });

  it("when the signature is forged, missing or stale, or the method is not POST, then 400/405 and nothing is written", async () => {
    const uid = newUid("forged");
    const { session_id } = await newCheckout(uid);
    const completed = await stripeStandin.complete(session_id);
    const now = Math.floor(Date.now() / 1000);
    const forged = await deliver(completed, `t=${now},v1=${"ab".repeat(32)}`);
    const missing = await deliver(completed, null);
    const stale = await deliver(
      completed,
      signStripePayload(JSON.stringify(completed), stripeStandin.webhookSecret, now - 3600),
    );
    const otherSecret = await deliver(completed, signStripePayload(JSON.stringify(completed), "whsec_attacker"));
    for (const answer of [forged, missing, stale, otherSecret]) {
      assert.equal(answer.status, 400, JSON.stringify(answer.body));
      assert.equal((answer.body as { error: { status: string } }).error.status, "invalid-argument");
    }
    const get = await fetch(webhookUrl(), { signal: AbortSignal.timeout(60_000) });
    assert.equal(get.status, 405);
    assert.equal((await db().collection("stripe_events").doc(completed.id).get()).exists, false);
    assert.equal((await paymentOf(session_id)).status, "pending");
    assert.deepEqual(await purchased(uid), []);
  });

  it("when an event is of another type or about a session we never created, then 200 and nothing is written", async () => {
    const foreign = stripeEvent(`evt_foreign_${randomUUID()}`, "checkout.session.completed", {
      id: `cs_test_foreign_${randomUUID()}`,
      payment_status: "paid",
      amount_total: 500,
      currency: "usd",
      payment_intent: "pi_foreign",
    });
    const other = { ...foreign, id: `evt_other_${randomUUID()}`, type: "invoice.paid" };
    for (const event of [foreign, other]) {
      const answer = await deliver(event);
      assert.deepEqual([answer.status, answer.body], [200, { received: true, outcome: "ignored" }]);
      assert.equal((await db().collection("stripe_events").doc(event.id).get()).exists, false);
    }
  });

  it("when applying an event fails, then 5xx and nothing is recorded, so Stripe's retry applies it once", async () => {
    const uid = newUid("retry");
    const { session_id } = await newCheckout(uid);
    const completed = await stripeStandin.complete(session_id);
    const payment = (await db().collection("payments").where("checkout_session_id", "==", session_id).get()).docs[0];
    // A payment the ledger refuses to post (credits not a whole number) makes the handler fail.
    await payment.ref.update({ credits: 0.5 });
    const failed = await deliver(completed);
    assert.equal(failed.status, 500);
    assert.equal((await db().collection("stripe_events").doc(completed.id).get()).exists, false);
    await payment.ref.update({ credits: 100 });
    const retried = await deliver(completed);
    assert.deepEqual(retried.body, { received: true, outcome: "granted" });
    assert.deepEqual(await purchased(uid), [100]);
  });
});
