/**
 * Refunds and disputes: the credits a payment's money going back takes back.
 *
 * Each event only adds to what we know about the payment, and knowledge only
 * grows: the largest cumulative `amount_refunded` seen (a late, smaller one
 * changes nothing), and each dispute's furthest state (`withdrawn`, then
 * `reinstated`, which is final: a withdrawal delivered after its reinstatement
 * changes nothing). From that knowledge follows how many of the pack's credits
 * the user should have lost:
 *
 *   - all of them while a dispute's funds are withdrawn (a dispute takes what
 *     remains of the purchase);
 *   - otherwise `floor(credits × refunded / amount)`, so a partial refund, then
 *     another, then a full one take exactly the pack's credits in total.
 *
 * Each event posts the difference between that and what was taken back so far
 * (net of reinstatements) as one ledger entry: a `clawback` when more must be
 * taken, a `reinstate` when a won dispute gives back what it took. Because the
 * target depends only on the accumulated knowledge, duplicated, concurrent and
 * reordered deliveries of the same events end in the same state.
 *
 * The payment is found by the `payment_intent` recorded when its checkout
 * completed. Stripe reorders events, so a refund or dispute may arrive before
 * the checkout event that records its payment intent: it is then **parked**
 * (parkCorrection) and the transaction that records the payment intent on the
 * payment applies it (webhook.ts). Events about payment intents no payment
 * ever records stay parked until their record expires: they change no credits.
 * The decision is made from the payment as read inside the credit transaction
 * that posts the entry, together with the event's record: one writer at a time
 * per payment, and each event applied once.
 */
import type { DocumentReference, Firestore } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import { paymentCorrectionTransaction, type CorrectPayment } from "../credits";
import { logs } from "../shared/logs";
import { DAY_MS, systemClock } from "../shared/time";
import { PAYMENTS, paymentRef, type DisputeState, type Payment } from "./payment";
import { Charge, Dispute, type StripeEvent } from "./schemas";
import type { EventOutcome, WebhookDeps } from "./webhook";

export const CORRECTION_EVENTS = new Set([
  "charge.refunded",
  "charge.dispute.funds_withdrawn",
  "charge.dispute.funds_reinstated",
]);

/** What one event tells us: a cumulative refund, or a dispute's new state. */
export type Report =
  { kind: "refund"; amountRefunded: number } | { kind: "dispute"; disputeId: string; state: DisputeState };

/** What we know of a payment's refunds and disputes, and what was done about it. */
export interface Corrections {
  refundedAmount: number;
  disputes: Record<string, DisputeState>;
  clawedBack: number;
  reinstated: number;
}

export function correctionsOf(payment: Payment): Corrections {
  return {
    refundedAmount: payment.refunded_amount ?? 0,
    disputes: { ...(payment.disputes ?? {}) },
    clawedBack: payment.clawed_back ?? 0,
    reinstated: payment.reinstated ?? 0,
  };
}

/** Knowledge after `report`: the largest refund, each dispute's furthest state. */
export function learn(known: Corrections, report: Report): Corrections {
  if (report.kind === "refund")
    return { ...known, refundedAmount: Math.max(known.refundedAmount, report.amountRefunded) };
  const current = known.disputes[report.disputeId];
  const state: DisputeState = current === "reinstated" || report.state === "reinstated" ? "reinstated" : "withdrawn";
  return { ...known, disputes: { ...known.disputes, [report.disputeId]: state } };
}

/** How many of the payment's credits the user should have lost, given what we know. */
export function creditsLost(payment: Pick<Payment, "credits" | "amount">, known: Corrections): number {
  if (Object.values(known.disputes).includes("withdrawn")) return payment.credits;
  const refunded = Math.min(known.refundedAmount, payment.amount);
  return Math.floor((payment.credits * refunded) / payment.amount);
}

/**
 * The signed change of credits still owed to the rules: < 0 takes credits back (a clawback), > 0 gives them
 * back (a reinstate), 0 does nothing.
 */
export function correctionDue(payment: Pick<Payment, "credits" | "amount">, known: Corrections): number {
  return known.clawedBack - known.reinstated - creditsLost(payment, known);
}

/** The payment intent and report an event of CORRECTION_EVENTS carries; null when it is not one we can read. */
export function reportOf(event: StripeEvent): { paymentIntent: string; report: Report } | null {
  if (event.type === "charge.refunded") {
    const charge = Charge.safeParse(event.data.object);
    const paymentIntent = charge.success ? idOf(charge.data.payment_intent) : null;
    if (!charge.success || !paymentIntent) return null;
    return { paymentIntent, report: { kind: "refund", amountRefunded: charge.data.amount_refunded } };
  }
  if (event.type === "charge.dispute.funds_withdrawn" || event.type === "charge.dispute.funds_reinstated") {
    const dispute = Dispute.safeParse(event.data.object);
    const paymentIntent = dispute.success ? idOf(dispute.data.payment_intent) : null;
    if (!dispute.success || !paymentIntent) return null;
    const state: DisputeState = event.type === "charge.dispute.funds_withdrawn" ? "withdrawn" : "reinstated";
    return { paymentIntent, report: { kind: "dispute", disputeId: dispute.data.id, state } };
  }
  return null;
}

function idOf(value: string | { id: string } | null | undefined): string | null {
  if (!value) return null;
  return typeof value === "string" ? value : value.id;
}

const REASONS: Record<StripeEvent["type"], string> = {
  "charge.refunded": "Payment refunded",
  "charge.dispute.funds_withdrawn": "Payment disputed",
  "charge.dispute.funds_reinstated": "Dispute won",
};

/**
 * Applies a refund or dispute event once (see the module comment): the event's record, the payment's new
 * knowledge and at most one ledger entry, in one credit transaction.
 */
export async function applyCorrectionEvent(
  deps: WebhookDeps,
  event: StripeEvent,
  stripeEvents: string,
  retentionDays: number,
): Promise<EventOutcome> {
  const read = reportOf(event);
  if (!read) return "ignored";
  const clock = deps.clock ?? systemClock;
  let payment = await findByPaymentIntent(deps.db, read.paymentIntent);
  if (!payment) {
    const parked = await parkCorrection(deps.db, event, read, stripeEvents, retentionDays, clock.now());
    if ("outcome" in parked) {
      logs.stripeEventApplied({ event_id: event.id, type: event.type, payment_intent: read.paymentIntent, ...parked });
      return parked.outcome;
    }
    payment = parked.payment;
  }
  const { id: paymentId, userId: uid } = payment;

  const { outcome, credits } = await paymentCorrectionTransaction(deps, uid, async (tx, correct: CorrectPayment) => {
    const eventRef = deps.db.collection(stripeEvents).doc(event.id);
    const ref = paymentRef(deps.db, paymentId);
    const [eventSnapshot, paymentSnapshot] = await tx.getAll(eventRef, ref);
    if (eventSnapshot.exists) return { outcome: "duplicate" as const, credits: 0 };
    const current = paymentSnapshot.data() as Payment;
    const known = learn(correctionsOf(current), read.report);
    // Nothing was granted for a payment that is not succeeded, so there is nothing to take back yet.
    const due = current.status === "succeeded" ? correctionDue(current, known) : 0;
    let outcome: EventOutcome = current.status === "succeeded" ? "unchanged" : "not-granted";
    const update: Record<string, unknown> = {
      refunded_amount: known.refundedAmount,
      disputes: known.disputes,
    };
    if (due !== 0) {
      const type = due < 0 ? "clawback" : "reinstate";
      const posted = await correct({
        type,
        provider: "stripe",
        paymentId,
        eventId: event.id,
        credits: Math.abs(due),
        purchaseEntryId: current.transaction_id,
        reason: `${REASONS[event.type] ?? event.type}: credit pack ${current.pack_id}`,
      });
      outcome = type === "clawback" ? "clawed-back" : "reinstated";
      if (type === "clawback") update.clawed_back = known.clawedBack - due;
      else update.reinstated = known.reinstated + due;
      update.correction_ids = [...(current.correction_ids ?? []), posted.transaction_id];
    }
    const { FieldValue } = firestoreValues();
    tx.update(ref, { ...update, updated_at: FieldValue.serverTimestamp() });
    tx.create(eventRef, {
      type: event.type,
      payment_id: paymentId,
      user_id: uid,
      payment_intent: read.paymentIntent,
      outcome,
      credits: Math.abs(due),
      received_at: FieldValue.serverTimestamp(),
      expire_at: new Date(clock.now().getTime() + retentionDays * DAY_MS),
    });
    return { outcome, credits: Math.abs(due) };
  });
  logs.stripeEventApplied({ event_id: event.id, type: event.type, payment_id: paymentId, uid, outcome, credits });
  return outcome;
}

/**
 * The payment whose checkout recorded this payment intent. Set once and never changed, so this read needs no
 * transaction; the payment itself is read again inside it.
 */
async function findByPaymentIntent(
  db: Firestore,
  paymentIntent: string,
): Promise<{ id: string; userId: string } | null> {
  const found = await db.collection(PAYMENTS).where("payment_intent", "==", paymentIntent).limit(1).get();
  const doc = found.docs[0];
  return doc ? { id: doc.id, userId: String(doc.get("user_id")) } : null;
}

/** A refund or dispute reported before its payment intent was recorded on a payment. */
export interface ParkedReport {
  event_id: string;
  type: string;
  report: Report;
}

/** The most reports one payment intent parks (a payment has a handful of refunds and disputes). */
export const MAX_PARKED = 100;

/**
 * `stripe_events/payment_intent:{pi}`: the payment intent's parked reports while no payment records it
 * (`payment_id: null`), then the payment that recorded it. Kept, like every `stripe_events` record, until
 * `expire_at`. The transaction that records the payment intent on a payment reads and writes it; so does
 * parkCorrection: a park and a recording that race conflict, and one of them runs again.
 */
export function parkedRef(db: Firestore, stripeEvents: string, paymentIntent: string): DocumentReference {
  return db.collection(stripeEvents).doc(`payment_intent:${paymentIntent}`);
}

/** The reports parked for a payment intent that no payment has recorded yet (what `parkedRef` holds). */
export function parkedReportsOf(data: Record<string, unknown> | undefined): ParkedReport[] {
  if (!data || data.payment_id) return [];
  return Array.isArray(data.parked) ? (data.parked as ParkedReport[]) : [];
}

/**
 * Parks a refund or dispute whose payment intent no payment records (yet), with the event's record, in one
 * transaction; or, when a payment recorded the payment intent meanwhile, answers that payment.
 */
async function parkCorrection(
  db: Firestore,
  event: StripeEvent,
  read: { paymentIntent: string; report: Report },
  stripeEvents: string,
  retentionDays: number,
  now: Date,
): Promise<{ outcome: EventOutcome } | { payment: { id: string; userId: string } }> {
  const eventRef = db.collection(stripeEvents).doc(event.id);
  const ref = parkedRef(db, stripeEvents, read.paymentIntent);
  return db.runTransaction(async (tx) => {
    const [eventSnapshot, parkedSnapshot] = await tx.getAll(eventRef, ref);
    if (eventSnapshot.exists) return { outcome: "duplicate" as const };
    const data = parkedSnapshot.data();
    if (data?.payment_id) return { payment: { id: String(data.payment_id), userId: String(data.user_id) } };
    const parked = parkedReportsOf(data);
    // Far more than a real payment has: not one of ours, or not worth keeping. Nothing written.
    if (parked.length >= MAX_PARKED) return { outcome: "ignored" as const };
    const { FieldValue } = firestoreValues();
    const expireAt = new Date(now.getTime() + retentionDays * DAY_MS);
    tx.set(ref, {
      payment_intent: read.paymentIntent,
      payment_id: null,
      user_id: null,
      parked: [...parked, { event_id: event.id, type: event.type, report: read.report }],
      updated_at: FieldValue.serverTimestamp(),
      expire_at: expireAt,
    });
    tx.create(eventRef, {
      type: event.type,
      payment_id: null,
      user_id: null,
      payment_intent: read.paymentIntent,
      outcome: "parked",
      credits: 0,
      received_at: FieldValue.serverTimestamp(),
      expire_at: expireAt,
    });
    return { outcome: "parked" as const };
  });
}
