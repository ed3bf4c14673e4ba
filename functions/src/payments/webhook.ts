/**
 * stripeWebhook's use cases: verify an event, then apply it once.
 *
 * Verification is the library's (`webhooks.constructEvent` over the raw body,
 * with its default tolerance); nothing unverified is applied or written.
 *
 * Applying acts on the verified payload alone (no call back to Stripe). An
 * event that concerns one of our payments is applied in one credit
 * transaction together with its record `stripe_events/{event.id}`: a
 * redelivered or concurrent duplicate finds the record and changes nothing.
 * A paid session grants its pack once per payment intent (credits/purchase.ts),
 * whichever of `checkout.session.completed` and
 * `checkout.session.async_payment_succeeded` comes first. Refunds and
 * disputes (`charge.refunded`, `charge.dispute.funds_withdrawn|reinstated`)
 * take credits back or give them back the same way (corrections.ts); one that
 * arrives before its payment intent is recorded is parked, and the session
 * event that records the payment intent applies it. Payment intent events save
 * a checkout's card for off-session use and settle auto top-ups
 * (auto-topup.ts). Events of other types, or about sessions and payment
 * intents we never recorded, change nothing and are not recorded.
 */
import type { Firestore } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import type { RedisGateway } from "../adapters/redis";
import { purchaseTransaction, type GrantPurchase, type PurchaseGrant } from "../credits";
import { DomainError } from "../shared/errors";
import { logs } from "../shared/logs";
import { DAY_MS, systemClock, type Clock } from "../shared/time";
import { lotOf, PAYMENTS, paymentRef, type Payment, type PaymentStatus } from "./payment";
import {
  applyCorrectionEvent,
  CORRECTION_EVENTS,
  correctionsOf,
  creditsLost,
  learn,
  parkedRef,
  parkedReportsOf,
  type ParkedReport,
} from "./corrections";
import {
  applyPaymentIntentEvent,
  PAYMENT_INTENT_EVENTS,
  type NotifyAutoTopUpDisabled,
  type PaymentIntentOutcome,
} from "./auto-topup";
import { CheckoutSession, StripeEvent } from "./schemas";
import { stripeWebhooks } from "./stripe-client";

export const STRIPE_EVENTS = "stripe_events";
/** Stripe retries a delivery for up to three days; the record outlives that with room to spare. */
export const STRIPE_EVENTS_RETENTION_DAYS = 30;

/** A request whose Stripe-Signature does not verify against its raw body (answered 400). */
export class WebhookUnverified extends DomainError {
  constructor(reason: string) {
    super("invalid-argument", `Webhook signature could not be verified: ${reason}`, { reason: "bad-signature" });
  }
}

/** The event in `rawBody`, if `signature` is Stripe's for it under `secret`; WebhookUnverified otherwise. */
export function verifyStripeEvent(
  rawBody: Buffer | undefined,
  signature: string | undefined,
  secret: string,
): StripeEvent {
  if (!secret) throw new WebhookUnverified("no webhook secret is configured");
  if (!rawBody || rawBody.length === 0) throw new WebhookUnverified("empty body");
  if (!signature) throw new WebhookUnverified("no Stripe-Signature header");
  let event: unknown;
  try {
    event = stripeWebhooks().constructEvent(rawBody, signature, secret);
  } catch (error) {
    throw new WebhookUnverified(error instanceof Error ? error.message : String(error));
  }
  const parsed = StripeEvent.safeParse(event);
  if (!parsed.success) throw new WebhookUnverified("not a Stripe event");
  return parsed.data;
}

export interface WebhookDeps {
  db: Firestore;
  lock?: RedisGateway;
  clock?: Clock;
  /** Tells a user auto top-up turned itself off; without it the state changes but nobody is told. */
  notifyDisabled?: NotifyAutoTopUpDisabled;
}

export type EventOutcome =
  /** The pack's credits were granted now. */
  | "granted"
  /** Paid, but this payment was granted before (by the other event of the pair). */
  | "already-granted"
  /** Completed without payment yet: the payment stays pending. */
  | "pending"
  | "failed"
  /** Paid, but not what the payment recorded: nothing granted (logged). */
  | "amount-mismatch"
  /** A refund or dispute took credits back (one `clawback` entry). */
  | "clawed-back"
  /** A won dispute gave back what it took (one `reinstate` entry). */
  | "reinstated"
  /** A refund or dispute event that changes nothing owed (e.g. a late, smaller cumulative refund); recorded. */
  | "unchanged"
  /** A refund or dispute of a payment whose credits were never granted: recorded, nothing taken. */
  | "not-granted"
  /**
   * A refund or dispute for a payment intent no payment records yet: kept, and applied by the event that
   * records the payment intent (the checkout's events may arrive after it).
   */
  | "parked"
  /** This event was applied before. */
  | "duplicate"
  /** Not ours or not a type we act on: nothing written. */
  | "ignored"
  /** Payment intent events (auto-topup.ts). */
  | PaymentIntentOutcome;

const SESSION_EVENTS = new Set([
  "checkout.session.completed",
  "checkout.session.async_payment_succeeded",
  "checkout.session.async_payment_failed",
]);

/** Applies a verified event once; see the module comment. */
export async function applyStripeEvent(deps: WebhookDeps, event: StripeEvent): Promise<EventOutcome> {
  if (CORRECTION_EVENTS.has(event.type))
    return applyCorrectionEvent(deps, event, STRIPE_EVENTS, STRIPE_EVENTS_RETENTION_DAYS);
  if (PAYMENT_INTENT_EVENTS.has(event.type)) return applyPaymentIntentEvent(deps, event);
  if (!SESSION_EVENTS.has(event.type)) return "ignored";
  const session = CheckoutSession.safeParse(event.data.object);
  if (!session.success) return "ignored";
  // Found by the session id we recorded, never by the payload's metadata: metadata is only what we asked Stripe
  // to echo. It says where to look first (the payment and user our checkout put there), and what is read there
  // counts only if it records this very session for that user; otherwise the query by session id decides. A
  // payment's session id and owner never change once set, so the query needs no transaction.
  const hinted = whereToLook(session.data);
  if (hinted) {
    const outcome = await applySessionEvent(deps, event, session.data, hinted);
    if (outcome !== "not-this-payment") return outcome;
  }
  const found = await deps.db.collection(PAYMENTS).where("checkout_session_id", "==", session.data.id).limit(1).get();
  const paymentDoc = found.docs[0];
  if (!paymentDoc) return "ignored";
  const outcome = await applySessionEvent(deps, event, session.data, {
    paymentId: paymentDoc.id,
    uid: String(paymentDoc.get("user_id")),
    packId: String(paymentDoc.get("pack_id")),
  });
  return outcome === "not-this-payment" ? "ignored" : outcome;
}

/** A payment a session event may be about, and its owner: from the session's metadata, or found by query. */
interface SessionPayment {
  paymentId: string;
  uid: string;
  packId: string;
}

function whereToLook(session: CheckoutSession): SessionPayment | null {
  const { payment_id: paymentId, user_id: uid, pack_id: packId } = session.metadata ?? {};
  return paymentId && uid && packId ? { paymentId, uid, packId } : null;
}

/**
 * The lot terms of the last payment of each pack applied on this instance: the guess of which lot a grant adds
 * to, read with the rest before the payment itself is read (a wrong guess costs one more read).
 */
const termsSeen = new Map<string, PurchaseGrant["lot"]>();
const MAX_TERMS_SEEN = 1_000;

/**
 * Applies a session event to the payment `where` names, in one credit transaction whose first round trip reads
 * the event's record, the payment, the parked corrections and what the grant will read; "not-this-payment"
 * (nothing written) if that payment does not record this session for that user.
 */
async function applySessionEvent(
  deps: WebhookDeps,
  event: StripeEvent,
  session: CheckoutSession,
  where: SessionPayment,
): Promise<EventOutcome | "not-this-payment"> {
  const { paymentId, uid } = where;
  const clock = deps.clock ?? systemClock;
  const eventRef = deps.db.collection(STRIPE_EVENTS).doc(event.id);
  const ref = paymentRef(deps.db, paymentId);
  const sessionIntent = paymentIntentOf(session);
  const parkRef = sessionIntent ? parkedRef(deps.db, STRIPE_EVENTS, sessionIntent) : null;
  const expected = {
    provider: "stripe",
    providerPaymentId: sessionIntent ?? session.id,
    lot: termsSeen.get(where.packId),
  };

  const result = await purchaseTransaction(
    deps,
    uid,
    async (tx, grant, [eventSnapshot, paymentSnapshot, parkSnapshot]) => {
      const payment = paymentSnapshot.data() as Payment | undefined;
      if (!payment || payment.checkout_session_id !== session.id || payment.user_id !== uid)
        return { outcome: "not-this-payment" as const };
      if (eventSnapshot.exists) return { outcome: "duplicate" as const, payment };
      // Refunds and disputes that arrived before any event recorded this payment intent; applied now, once: the
      // record below says the payment intent is ours from here on.
      const recording = parkRef !== null && !parkSnapshot?.get("payment_id") && !payment.payment_intent;
      const parked = recording ? parkedReportsOf(parkSnapshot?.data()) : [];
      const { outcome, update } = await decide(event, session, paymentId, payment, parked, grant);
      const { FieldValue } = firestoreValues();
      if (update) tx.update(ref, { ...update, updated_at: FieldValue.serverTimestamp() });
      const now = clock.now();
      if (recording && parkRef)
        tx.set(parkRef, {
          payment_intent: sessionIntent,
          payment_id: paymentId,
          user_id: uid,
          parked,
          applied_by: event.id,
          updated_at: FieldValue.serverTimestamp(),
          expire_at: new Date(now.getTime() + STRIPE_EVENTS_RETENTION_DAYS * DAY_MS),
        });
      tx.create(eventRef, {
        type: event.type,
        payment_id: paymentId,
        user_id: uid,
        checkout_session_id: session.id,
        outcome,
        received_at: FieldValue.serverTimestamp(),
        expire_at: new Date(now.getTime() + STRIPE_EVENTS_RETENTION_DAYS * DAY_MS),
      });
      return { outcome, payment };
    },
    { refs: [eventRef, ref, ...(parkRef ? [parkRef] : [])], expected },
  );
  if (result.outcome === "not-this-payment") return result.outcome;
  const { outcome, payment } = result;
  if (termsSeen.size >= MAX_TERMS_SEEN && !termsSeen.has(payment.pack_id)) termsSeen.clear();
  termsSeen.set(payment.pack_id, lotOf(payment));
  // Logged after the transaction, which may run more than once.
  if (outcome === "amount-mismatch") {
    logs.stripeAmountMismatch({
      event_id: event.id,
      payment_id: paymentId,
      session_id: session.id,
      expected_amount: payment.amount,
      expected_currency: payment.currency,
      amount_total: session.amount_total,
      currency: session.currency,
    });
  }
  logs.stripeEventApplied({ event_id: event.id, type: event.type, payment_id: paymentId, uid, outcome });
  return outcome;
}

type PaymentUpdate = Partial<
  Pick<
    Payment,
    "status" | "payment_intent" | "transaction_id" | "refunded_amount" | "disputes" | "clawed_back" | "correction_ids"
  >
>;

/**
 * What one session event does to its payment (and, for a paid one, the grant), inside the transaction.
 * `parked`: refunds and disputes reported before this payment intent was recorded, learnt now; a grant takes
 * back at once what they (and anything learnt before) say the payment lost.
 */
async function decide(
  event: StripeEvent,
  session: CheckoutSession,
  paymentId: string,
  payment: Payment,
  parked: ParkedReport[],
  grant: GrantPurchase,
): Promise<{ outcome: EventOutcome; update?: PaymentUpdate }> {
  const type = event.type;
  const paymentIntent = paymentIntentOf(session);
  const known = parked.reduce((sum, { report }) => learn(sum, report), correctionsOf(payment));
  const learnt: PaymentUpdate = {
    ...(paymentIntent && !payment.payment_intent ? { payment_intent: paymentIntent } : {}),
    ...(parked.length > 0 ? { refunded_amount: known.refundedAmount, disputes: known.disputes } : {}),
  };
  const paid =
    type === "checkout.session.async_payment_succeeded" ||
    (type === "checkout.session.completed" && session.payment_status === "paid");

  if (type === "checkout.session.async_payment_failed") {
    // Succeeded is final: a late failure report for a paid payment changes nothing.
    const status: PaymentStatus | undefined = payment.status === "pending" ? "failed" : undefined;
    return { outcome: "failed", update: { ...learnt, ...(status ? { status } : {}) } };
  }
  if (!paid) return { outcome: "pending", update: learnt };

  if (session.amount_total !== payment.amount || session.currency !== payment.currency)
    return { outcome: "amount-mismatch", update: learnt };
  if (payment.status === "succeeded") return { outcome: "already-granted", update: learnt };
  // Nothing was granted yet, so nothing was taken back: what the refunds and disputes known so far say the
  // payment lost goes back in the grant's own transaction.
  const lost = creditsLost(payment, known);
  // Keyed by the payment intent, so the two events reporting one payment grant once (a paid session has one;
  // the session id stands in only if a payload ever lacks it).
  const result = await grant({
    provider: "stripe",
    providerPaymentId: paymentIntent ?? payment.payment_intent ?? session.id,
    paymentId,
    credits: payment.credits,
    reason: `Purchase of credit pack ${payment.pack_id}`,
    // The lot the pack describes, as it was sold.
    lot: lotOf(payment),
    ...(lost > 0
      ? {
          clawBack: {
            credits: lost,
            eventId: event.id,
            reason: `Refunded or disputed before it was granted: credit pack ${payment.pack_id}`,
          },
        }
      : {}),
  });
  const clawedBack: PaymentUpdate = result.clawback
    ? {
        refunded_amount: known.refundedAmount,
        disputes: known.disputes,
        clawed_back: known.clawedBack + lost,
        correction_ids: [...(payment.correction_ids ?? []), result.clawback.transaction_id],
      }
    : {};
  return {
    outcome: result.replayed ? "already-granted" : "granted",
    // Money received outranks an earlier failure report (events arrive in any order).
    update: { ...learnt, ...clawedBack, status: "succeeded", transaction_id: result.transaction_id },
  };
}

function paymentIntentOf(session: CheckoutSession): string | null {
  const value = session.payment_intent;
  if (!value) return null;
  return typeof value === "string" ? value : value.id;
}
