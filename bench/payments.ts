/**
 * stripeWebhook through the functions emulator, against the bare grant use case
 * measured in the same run on the same Firestore emulator (issue 13: target
 * ≥ 0.7×).
 *   webhook: distinct paid purchases, each a `checkout.session.completed`
 *     signed with the library's test-header helper (`generateTestHeaderString`)
 *     and POSTed to the webhook as Stripe does, verified and applied (one grant,
 *     one `stripe_events` record, the payment marked succeeded)
 *   floor: `grantCredits` called in this process, as many grants to as many
 *     fresh users
 * Sequential and interleaved (so the machine's noise hits both alike), then a
 * burst of concurrent ones of each, after an untimed burst that warms the
 * emulator's workers.
 */
import { randomUUID } from "node:crypto";
import { firestore } from "../functions/src/adapters/firebase";
import { grantCredits } from "../functions/src/credits/operations";
import type { PaymentDraft } from "../functions/src/payments/payment";
import { deliverEvent, stripeEvent, type StripeEventPayload } from "../scripts/harness/stripe-standin";
import { env, suite } from "../test/support/suite";
import type { Row } from "./stats";

const CREDITS = 100;
const AMOUNT = 500;

export async function paymentsBench(rows: Row[], samples = 40, concurrent = 10): Promise<void> {
  const db = firestore();
  const secret = env("STRIPE_WEBHOOK_SECRET");
  const url = `${suite.functionsBaseUrl}/stripeWebhook`;
  const run = randomUUID().slice(0, 8);
  let counter = 0;

  /** A pending payment as createCheckoutSession records it, and the paid completion Stripe would send for it. */
  const newPurchase = async (): Promise<StripeEventPayload> => {
    // Taken before the first await: concurrent purchases (the burst) each get their own number.
    const n = (counter += 1);
    const uid = `bench-pay-${run}-${n}`;
    const sessionId = `cs_bench_${run}_${n}`;
    const draft: PaymentDraft = {
      user_id: uid,
      pack_id: "starter",
      credits: CREDITS,
      amount: AMOUNT,
      currency: "usd",
      expires_after_days: null,
      priority: null,
      status: "pending",
      provider: "stripe",
      checkout_session_id: sessionId,
      checkout_url: null,
      payment_intent: null,
      save_payment_method: false,
      request_fingerprint: "bench",
      transaction_id: null,
    };
    await db
      .collection("payments")
      .doc(`pay_bench_${run}_${n}`)
      .set({ ...draft, created_at: new Date() });
    return stripeEvent(`evt_bench_${run}_${n}`, "checkout.session.completed", {
      id: sessionId,
      object: "checkout.session",
      payment_status: "paid",
      amount_total: AMOUNT,
      currency: "usd",
      payment_intent: `pi_bench_${run}_${n}`,
      // As Stripe echoes what createCheckoutSession set.
      metadata: { user_id: uid, pack_id: "starter", payment_id: `pay_bench_${run}_${n}` },
    });
  };
  const post = async (event: StripeEventPayload) => {
    const answer = await deliverEvent(url, event, secret);
    const outcome = (answer.body as { outcome?: string } | undefined)?.outcome;
    if (answer.status !== 200 || outcome !== "granted")
      throw new Error(`webhook answered ${answer.status} ${JSON.stringify(answer.body)}`);
  };
  const grant = () =>
    grantCredits({ db }, "bench", {
      user_id: `bench-grant-${run}-${(counter += 1)}`,
      amount: CREDITS,
      type: "purchase",
      reason: "bench",
      idempotency_key: randomUUID(),
    });
  const timed = async (work: () => Promise<unknown>) => {
    const started = performance.now();
    await work();
    return performance.now() - started;
  };

  // Warm both paths (the emulator's worker, the library's first load, gRPC channels).
  for (let i = 0; i < 3; i++) {
    await post(await newPurchase());
    await grant();
  }
  let webhookMs = 0;
  let grantMs = 0;
  for (let i = 0; i < samples; i++) {
    const event = await newPurchase(); // set up, not timed
    webhookMs += await timed(() => post(event));
    grantMs += await timed(grant);
  }
  const grantRate = (samples / grantMs) * 1000;
  const webhookRate = (samples / webhookMs) * 1000;
  rows.push(
    {
      scenario: "stripeWebhook",
      name: "floor: grantCredits use case, in process, sequential",
      value: grantRate,
      unit: "grants/s",
      ratio: 1,
    },
    {
      scenario: "stripeWebhook",
      name: "signed completions verified and applied, sequential",
      value: webhookRate,
      unit: "events/s",
      ratio: webhookRate / grantRate,
      target: "≥ 0.7×",
      pass: webhookRate / grantRate >= 0.7,
    },
  );

  // The emulator starts a worker per concurrent request it has no idle worker for: warm them untimed first.
  const burst = async () => Promise.all(Array.from({ length: concurrent }, () => newPurchase()));
  await Promise.allSettled((await burst()).map(post));
  const events = await burst();
  const webhookBurst = await timed(() => Promise.all(events.map(post)));
  const grantBurst = await timed(() => Promise.all(Array.from({ length: concurrent }, grant)));
  const burstGrantRate = (concurrent / grantBurst) * 1000;
  const burstWebhookRate = (concurrent / webhookBurst) * 1000;
  rows.push(
    {
      scenario: "stripeWebhook",
      name: `floor: ${concurrent} concurrent grants to distinct users`,
      value: burstGrantRate,
      unit: "grants/s",
      ratio: 1,
    },
    {
      scenario: "stripeWebhook",
      name: `${concurrent} concurrent completions of distinct purchases`,
      value: burstWebhookRate,
      unit: "events/s",
      ratio: burstWebhookRate / burstGrantRate,
      note: "ratio > 1 is better here",
    },
  );
}
