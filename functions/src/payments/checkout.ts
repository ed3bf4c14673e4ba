/**
 * createCheckoutSession: a Stripe Checkout session for one credit pack.
 *
 * Idempotent by the caller's key: the payment id follows from (uid, key), the
 * payment record is written first with the pack as sold, and Stripe gets a key
 * derived from the payment id with parameters built from that record, so a
 * retry (even after the pack's price changed, or after a crash between the
 * Stripe call and our write) gets the same session back, and the same key
 * with other parameters is refused.
 */
import { createHash } from "node:crypto";
import type { Firestore } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import { DomainError } from "../shared/errors";
import { logs } from "../shared/logs";
import { ensureCustomer } from "./customer";
import { findCreditPack } from "./packs";
import { packTerms, paymentIdFor, paymentRef, type PaymentDraft } from "./payment";
import type { CreateCheckoutInput } from "./schemas";
import type { StripeClient } from "./stripe-client";

export interface CheckoutDeps {
  db: Firestore;
  stripe: StripeClient;
}

export interface CheckoutResult {
  session_id: string;
  url: string;
}

export class CheckoutKeyReused extends DomainError {
  constructor() {
    super("already-exists", "This idempotency key was already used with different parameters.", {
      reason: "idempotency-key-reused",
    });
  }
}

function fingerprintOf(input: CreateCheckoutInput): string {
  const { pack_id, success_url, cancel_url } = input;
  const canonical = JSON.stringify([pack_id, success_url, cancel_url, input.save_payment_method === true]);
  return createHash("sha256").update(canonical).digest("hex");
}

/** Creates (or, for a replayed key, returns) the checkout session for `input.pack_id`. */
export async function createCheckoutSession(
  deps: CheckoutDeps,
  uid: string,
  input: CreateCheckoutInput,
): Promise<CheckoutResult> {
  const paymentId = paymentIdFor(uid, input.idempotency_key);
  const ref = paymentRef(deps.db, paymentId);
  const fingerprint = fingerprintOf(input);
  const { FieldValue } = firestoreValues();

  // 1. The payment record, with the pack as sold; a replay finds it.
  let payment = (await ref.get()).data() as PaymentDraft | undefined;
  if (!payment) {
    const pack = await findCreditPack(deps.db, input.pack_id);
    payment = await deps.db.runTransaction(async (tx) => {
      const existing = (await tx.get(ref)).data() as PaymentDraft | undefined;
      if (existing) return existing;
      const draft: PaymentDraft = {
        user_id: uid,
        ...packTerms(pack),
        status: "pending",
        provider: "stripe",
        checkout_session_id: null,
        checkout_url: null,
        payment_intent: null,
        save_payment_method: input.save_payment_method === true,
        request_fingerprint: fingerprint,
        transaction_id: null,
      };
      tx.create(ref, {
        ...draft,
        created_at: FieldValue.serverTimestamp(),
        updated_at: FieldValue.serverTimestamp(),
      });
      return draft;
    });
  }
  if (payment.request_fingerprint !== fingerprint) throw new CheckoutKeyReused();
  if (payment.checkout_session_id && payment.checkout_url) {
    logs.checkoutCreated(uid, paymentId, payment.checkout_session_id, true);
    return { session_id: payment.checkout_session_id, url: payment.checkout_url };
  }

  // 2. The session, from the record: the same Stripe key always carries the same parameters.
  const customer = await ensureCustomer(deps, uid);
  const metadata = { user_id: uid, pack_id: payment.pack_id, payment_id: paymentId };
  const session = await deps.stripe.checkout.sessions.create(
    {
      mode: "payment",
      customer,
      client_reference_id: uid,
      metadata,
      line_items: [
        {
          quantity: 1,
          price_data: {
            currency: payment.currency,
            unit_amount: payment.amount,
            product_data: { name: `${payment.credits} credits`, metadata: { pack_id: payment.pack_id } },
          },
        },
      ],
      payment_intent_data: {
        metadata,
        ...(payment.save_payment_method ? { setup_future_usage: "off_session" as const } : {}),
      },
      success_url: input.success_url,
      cancel_url: input.cancel_url,
    },
    { idempotencyKey: `checkout-${paymentId}` },
  );
  if (!session.url) throw new Error(`Stripe returned checkout session ${session.id} without a url`);

  // 3. Remember the session; the first one stored stands (a concurrent retry got the same one from Stripe).
  const stored = await deps.db.runTransaction(async (tx) => {
    const current = (await tx.get(ref)).data() as PaymentDraft;
    if (current.checkout_session_id && current.checkout_url)
      return { session_id: current.checkout_session_id, url: current.checkout_url };
    tx.update(ref, {
      checkout_session_id: session.id,
      checkout_url: session.url,
      updated_at: FieldValue.serverTimestamp(),
    });
    return { session_id: session.id, url: session.url as string };
  });
  logs.checkoutCreated(uid, paymentId, stored.session_id, false);
  return stored;
}
