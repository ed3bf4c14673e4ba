/**
 * Auto top-up, the payments side: the saved card, the settings, the
 * off-session charge and the events that settle it.
 *
 * - A checkout with `save_payment_method` sets the payment intent up for
 *   off-session use; its `payment_intent.succeeded` event carries the
 *   customer, the payment method and `setup_future_usage`, and the webhook
 *   stores the method on the user whose `stripe_customer_id` it is
 *   (`stripe_payment_method`, server-only), from the verified event alone.
 * - `setAutoTopUp` stores the settings through the credits module, which owns
 *   them and starts top-ups from the ledger (credits/topup.ts).
 * - `chargeTopUp` (the trigger on `topups/{id}` creation) records the
 *   payment, then asks Stripe for an off-session PaymentIntent with confirm,
 *   under the idempotency key = the top-up id: run twice, it gets the same
 *   PaymentIntent. A card error at create marks the top-up failed.
 * - `payment_intent.succeeded` for a top-up grants the pack once, keyed by the
 *   payment intent (credits/purchase.ts), in the transaction that marks top-up
 *   and payment succeeded; `payment_intent.payment_failed` marks them failed,
 *   unless the card error did first. The third failure in a row turns auto
 *   top-up off; the user is told once (notification keyed by the top-up).
 */
import type { Firestore } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import type { RedisGateway } from "../adapters/redis";
import {
  autoTopUpOf,
  configureAutoTopUp,
  purchaseTransaction,
  settleTopUp,
  TOPUPS,
  topUpRefs,
  topUpTransaction,
  type TopUp,
  type TopUpOutcome,
} from "../credits";
import { notify, type NotifyDeps } from "../notifications/notifications";
import { InvalidInput } from "../shared/errors";
import { logs } from "../shared/logs";
import { DAY_MS, systemClock, type Clock } from "../shared/time";
import { loadCreditPacks } from "./packs";
import { lotOf, packTerms, paymentIdFor, paymentRef, type Payment, type PaymentDraft } from "./payment";
import { PaymentIntent, type SetAutoTopUpInput, type StripeEvent } from "./schemas";
import type { StripeClient } from "./stripe-client";

const USERS = "users";
const STRIPE_EVENTS = "stripe_events";
const STRIPE_EVENTS_RETENTION_DAYS = 30;

export const PAYMENT_INTENT_EVENTS = new Set(["payment_intent.succeeded", "payment_intent.payment_failed"]);

/** Tells a user auto top-up turned itself off (after the top-up `topupId` failed); idempotent per top-up. */
export type NotifyAutoTopUpDisabled = (uid: string, topupId: string) => Promise<void>;

export interface AutoTopUpDeps {
  db: Firestore;
  lock?: RedisGateway;
  clock?: Clock;
  notifyDisabled?: NotifyAutoTopUpDisabled;
}

/** The user can be charged off-session: a customer and a saved payment method. */
export function hasPaymentMethod(fields: Record<string, unknown>): boolean {
  return (
    typeof fields.stripe_customer_id === "string" &&
    fields.stripe_customer_id !== "" &&
    typeof fields.stripe_payment_method === "string" &&
    fields.stripe_payment_method !== ""
  );
}

/** The payment record of a top-up's charge: one per top-up. */
export function topUpPaymentId(uid: string, topupId: string): string {
  return paymentIdFor(uid, `auto-topup:${topupId}`);
}

/** setAutoTopUp: validates the pack and the cap against it, stores, answers the stored settings. */
export async function setAutoTopUp(
  deps: AutoTopUpDeps,
  uid: string,
  input: SetAutoTopUpInput,
): Promise<SetAutoTopUpInput> {
  const pack = (await loadCreditPacks(deps.db)).find((candidate) => candidate.pack_id === input.pack_id);
  if (!pack)
    throw new InvalidInput(`Invalid input (pack_id: no credit pack ${input.pack_id})`, [
      { path: "pack_id", message: "no such credit pack", code: "custom" },
    ]);
  if (input.monthly_cap < pack.credits)
    throw new InvalidInput(`Invalid input (monthly_cap: less than the pack's ${pack.credits} credits)`, [
      { path: "monthly_cap", message: `must be at least the pack's ${pack.credits} credits`, code: "too_small" },
    ]);
  const state = await configureAutoTopUp(deps, uid, input, packTerms(pack), hasPaymentMethod);
  logs.autoTopUpSet({ uid, enabled: state.enabled, pack_id: state.pack_id, threshold: state.threshold });
  return {
    enabled: state.enabled,
    threshold: state.threshold,
    pack_id: state.pack_id,
    monthly_cap: state.monthly_cap,
  };
}

export type ChargeOutcome = "charged" | "declined" | "not-charged" | "settled" | "missing";

/**
 * How long after a top-up was started it may still be sent to Stripe. Stripe keeps idempotency keys for 24 h;
 * an event trigger's retries can run about as long. A charge sent after the key was forgotten could make a second
 * PaymentIntent for a top-up whose first one went through, so past this window the top-up fails instead (not
 * counted as a decline). If the first attempt did reach Stripe, its payment_intent event still settles it.
 */
export const CHARGE_WINDOW_MS = 23 * 60 * 60 * 1000;

/**
 * Charges the pending top-up `topupId` off-session (the trigger on its
 * creation; safe to run again: the same Stripe idempotency key answers the
 * same PaymentIntent, and a settled top-up is left alone).
 */
export async function chargeTopUp(
  deps: AutoTopUpDeps & { stripe: StripeClient },
  topupId: string,
): Promise<ChargeOutcome> {
  const snapshot = await deps.db.collection(TOPUPS).doc(topupId).get();
  if (!snapshot.exists) return "missing";
  const topUp = snapshot.data() as TopUp;
  if (topUp.status !== "pending") return "settled";
  const uid = topUp.user_id;
  const paymentId = topUpPaymentId(uid, topupId);
  await recordTopUpPayment(deps.db, paymentId, topupId, topUp);

  const user = (await deps.db.collection(USERS).doc(uid).get()).data() ?? {};
  const fail = (reason: string, counts: boolean, paymentIntent: string | null = null) =>
    failTopUp(deps, uid, topupId, { status: "failed", paymentId, paymentIntent, reason, counts });
  if (!autoTopUpOf(user)?.enabled) {
    await fail("auto-topup-disabled", false);
    return "not-charged";
  }
  if (!hasPaymentMethod(user)) {
    await fail("no-payment-method", false);
    return "not-charged";
  }
  const startedAt = snapshot.createTime?.toMillis() ?? 0;
  if ((deps.clock ?? systemClock).now().getTime() - startedAt > CHARGE_WINDOW_MS) {
    // A PaymentIntent already made for it is Stripe's to settle (its event arrives); without one, give up.
    if ((await paymentRef(deps.db, paymentId).get()).get("payment_intent")) return "charged";
    await fail("charge-window-passed", false);
    return "not-charged";
  }

  let intent: { id: string; status: string };
  try {
    intent = await deps.stripe.paymentIntents.create(
      {
        amount: topUp.amount,
        currency: topUp.currency,
        customer: String(user.stripe_customer_id),
        payment_method: String(user.stripe_payment_method),
        off_session: true,
        confirm: true,
        description: `Auto top-up: ${topUp.credits} credits`,
        metadata: { user_id: uid, topup_id: topupId, payment_id: paymentId, pack_id: topUp.pack_id },
      },
      { idempotencyKey: topupId },
    );
  } catch (error) {
    const declined = cardErrorOf(error);
    if (!declined) throw error;
    await fail(declined.code, true, declined.paymentIntent);
    logs.autoTopUpCharged({ uid, topup_id: topupId, payment_id: paymentId, outcome: "declined", code: declined.code });
    return "declined";
  }
  await recordPaymentIntent(deps.db, paymentId, intent.id);
  logs.autoTopUpCharged({
    uid,
    topup_id: topupId,
    payment_id: paymentId,
    payment_intent: intent.id,
    outcome: intent.status,
  });
  if (intent.status === "requires_payment_method") {
    await fail("declined", true, intent.id);
    return "declined";
  }
  // Succeeded (or still processing): the webhook's payment_intent event grants or fails it.
  return "charged";
}

/** The library's card error (a decline at confirm), with the payment intent Stripe made for it. */
function cardErrorOf(error: unknown): { code: string; paymentIntent: string | null } | null {
  const candidate = error as {
    type?: unknown;
    code?: unknown;
    decline_code?: unknown;
    raw?: { payment_intent?: { id?: unknown } };
  };
  if (candidate?.type !== "StripeCardError") return null;
  const code =
    typeof candidate.decline_code === "string"
      ? candidate.decline_code
      : typeof candidate.code === "string"
        ? candidate.code
        : "card_declined";
  const id = candidate.raw?.payment_intent?.id;
  return { code, paymentIntent: typeof id === "string" ? id : null };
}

/** `payments/{paymentId}` for a top-up, written once before Stripe is asked (so its events find it). */
async function recordTopUpPayment(db: Firestore, paymentId: string, topupId: string, topUp: TopUp): Promise<void> {
  const ref = paymentRef(db, paymentId);
  const { FieldValue } = firestoreValues();
  await db.runTransaction(async (tx) => {
    if ((await tx.get(ref)).exists) return;
    const draft: PaymentDraft = {
      user_id: topUp.user_id,
      ...packTerms(topUp),
      status: "pending",
      provider: "stripe",
      kind: "auto_topup",
      topup_id: topupId,
      checkout_session_id: null,
      checkout_url: null,
      payment_intent: null,
      save_payment_method: false,
      request_fingerprint: topupId,
      transaction_id: null,
    };
    tx.create(ref, { ...draft, created_at: FieldValue.serverTimestamp(), updated_at: FieldValue.serverTimestamp() });
  });
}

/** Remembers the payment intent on the payment (set once: the same key always made the same one). */
async function recordPaymentIntent(db: Firestore, paymentId: string, paymentIntent: string): Promise<void> {
  const ref = paymentRef(db, paymentId);
  const { FieldValue } = firestoreValues();
  await db.runTransaction(async (tx) => {
    const current = (await tx.get(ref)).get("payment_intent") as unknown;
    if (current) return;
    tx.update(ref, { payment_intent: paymentIntent, updated_at: FieldValue.serverTimestamp() });
  });
}

/**
 * Marks the top-up and its payment failed (once; whichever report comes first) with the event's record when
 * an event reports it, then tells the user if this turned auto top-up off.
 */
async function failTopUp(
  deps: AutoTopUpDeps,
  uid: string,
  topupId: string,
  outcome: Extract<TopUpOutcome, { status: "failed" }>,
  event?: { id: string; type: string },
): Promise<"failed" | "duplicate" | "already-settled"> {
  const clock = deps.clock ?? systemClock;
  const refs = topUpRefs(deps.db, topupId, uid);
  const { result, disabled } = await topUpTransaction(deps, uid, async (tx) => {
    const eventRef = deps.db.collection(STRIPE_EVENTS).doc(event?.id ?? "-");
    const pay = paymentRef(deps.db, outcome.paymentId);
    const [topUpSnapshot, userSnapshot, paymentSnapshot, eventSnapshot] = await tx.getAll(
      refs.topUp,
      refs.user,
      pay,
      eventRef,
    );
    if (event && eventSnapshot.exists)
      return { result: "duplicate" as const, disabled: topUpSnapshot.get("disabled_auto_topup") === true };
    const settled = settleTopUp(tx, topUpSnapshot, userSnapshot, outcome);
    const { FieldValue } = firestoreValues();
    const payment = paymentSnapshot.data() as Payment | undefined;
    if (settled.changed && payment?.status === "pending") {
      tx.update(pay, {
        status: "failed",
        ...(outcome.paymentIntent && !payment.payment_intent ? { payment_intent: outcome.paymentIntent } : {}),
        failure_reason: outcome.reason,
        updated_at: FieldValue.serverTimestamp(),
      });
    }
    const result = settled.changed ? ("failed" as const) : ("already-settled" as const);
    if (event) {
      tx.create(eventRef, {
        type: event.type,
        payment_id: outcome.paymentId,
        user_id: uid,
        topup_id: topupId,
        payment_intent: outcome.paymentIntent,
        outcome: result,
        received_at: FieldValue.serverTimestamp(),
        expire_at: new Date(clock.now().getTime() + STRIPE_EVENTS_RETENTION_DAYS * DAY_MS),
      });
    }
    return { result, disabled: settled.disabledAutoTopUp };
  });
  if (disabled) {
    logs.autoTopUpDisabled({ uid, topup_id: topupId });
    await deps.notifyDisabled?.(uid, topupId);
  }
  return result;
}

/** The notification that auto top-up is off, through the notifications module (deduped by the top-up). */
export function autoTopUpDisabledNotifier(notifyDeps: () => Promise<NotifyDeps>): NotifyAutoTopUpDisabled {
  return async (uid, topupId) => {
    await notify(await notifyDeps(), {
      userId: uid,
      type: "auto_topup_disabled",
      toastMessage:
        "Auto top-up is off: your card was declined three times in a row. Update your card to turn it on again.",
      urgency: "high",
      persistent: true,
      dedupeKey: `auto-topup-disabled:${topupId}`,
      messageId: topupId,
    });
  };
}

export type PaymentIntentOutcome =
  | "granted"
  | "already-granted"
  | "failed"
  | "already-settled"
  | "payment-method-saved"
  | "unchanged"
  | "amount-mismatch"
  | "duplicate"
  | "ignored";

/** Applies `payment_intent.succeeded|payment_failed` once (see the module comment). */
export async function applyPaymentIntentEvent(deps: AutoTopUpDeps, event: StripeEvent): Promise<PaymentIntentOutcome> {
  const parsed = PaymentIntent.safeParse(event.data.object);
  if (!parsed.success) return "ignored";
  const intent = parsed.data;
  const topupId = intent.metadata?.topup_id;
  let outcome: PaymentIntentOutcome;
  if (topupId) outcome = await applyTopUpEvent(deps, event, intent, topupId);
  else if (event.type === "payment_intent.succeeded" && intent.setup_future_usage === "off_session")
    outcome = await savePaymentMethod(deps, event, intent);
  else outcome = "ignored";
  if (outcome !== "ignored")
    logs.stripeEventApplied({
      event_id: event.id,
      type: event.type,
      payment_intent: intent.id,
      topup_id: topupId,
      outcome,
    });
  return outcome;
}

function idOf(value: string | { id: string } | null | undefined): string | null {
  if (!value) return null;
  return typeof value === "string" ? value : value.id;
}

/**
 * The top-up payment this event is about. Found through the metadata our charge set, and believed only if it
 * matches what we recorded: a top-up payment for that top-up and user, the user's own customer, the same
 * amount and currency, and the payment intent we recorded (when we did already).
 */
async function topUpPaymentOf(
  db: Firestore,
  intent: PaymentIntent,
  topupId: string,
): Promise<{ paymentId: string; payment: Payment } | "amount-mismatch" | null> {
  const paymentId = intent.metadata?.payment_id;
  if (!paymentId) return null;
  const snapshot = await paymentRef(db, paymentId).get();
  const payment = snapshot.data() as Payment | undefined;
  if (!payment || payment.kind !== "auto_topup" || payment.topup_id !== topupId) return null;
  if (payment.user_id !== intent.metadata?.user_id) return null;
  if (payment.payment_intent && payment.payment_intent !== intent.id) return null;
  const customer = (await db.collection(USERS).doc(payment.user_id).get()).get("stripe_customer_id") as unknown;
  if (customer !== idOf(intent.customer)) return null;
  if (payment.amount !== intent.amount || payment.currency !== intent.currency) return "amount-mismatch";
  return { paymentId, payment };
}

async function applyTopUpEvent(
  deps: AutoTopUpDeps,
  event: StripeEvent,
  intent: PaymentIntent,
  topupId: string,
): Promise<PaymentIntentOutcome> {
  const found = await topUpPaymentOf(deps.db, intent, topupId);
  if (found === "amount-mismatch") {
    logs.stripeAmountMismatch({
      event_id: event.id,
      payment_intent: intent.id,
      topup_id: topupId,
      amount: intent.amount,
    });
    return "amount-mismatch";
  }
  if (!found) return "ignored";
  const { paymentId, payment } = found;
  const uid = payment.user_id;
  if (event.type === "payment_intent.payment_failed") {
    const reason = intent.last_payment_error?.decline_code ?? intent.last_payment_error?.code ?? "declined";
    const result = await failTopUp(
      deps,
      uid,
      topupId,
      { status: "failed", paymentId, paymentIntent: intent.id, reason, counts: true },
      { id: event.id, type: event.type },
    );
    return result;
  }
  const clock = deps.clock ?? systemClock;
  const refs = topUpRefs(deps.db, topupId, uid);
  const eventRef = deps.db.collection(STRIPE_EVENTS).doc(event.id);
  const pay = paymentRef(deps.db, paymentId);
  return purchaseTransaction(
    deps,
    uid,
    async (tx, grant, [eventSnapshot, paymentSnapshot, topUpSnapshot, userSnapshot]) => {
      if (eventSnapshot.exists) return "duplicate" as const;
      const current = paymentSnapshot.data() as Payment;
      const { FieldValue } = firestoreValues();
      let outcome: PaymentIntentOutcome = "already-granted";
      if (current.status !== "succeeded") {
        // Keyed by the payment intent: a redelivery, or a retried charge (same intent), grants once.
        const granted = await grant({
          provider: "stripe",
          providerPaymentId: intent.id,
          paymentId,
          credits: current.credits,
          reason: `Auto top-up: credit pack ${current.pack_id}`,
          lot: lotOf(current),
        });
        settleTopUp(tx, topUpSnapshot, userSnapshot, {
          status: "succeeded",
          paymentId,
          paymentIntent: intent.id,
          transactionId: granted.transaction_id,
        });
        tx.update(pay, {
          status: "succeeded",
          payment_intent: intent.id,
          transaction_id: granted.transaction_id,
          updated_at: FieldValue.serverTimestamp(),
        });
        outcome = granted.replayed ? "already-granted" : "granted";
      }
      tx.create(eventRef, {
        type: event.type,
        payment_id: paymentId,
        user_id: uid,
        topup_id: topupId,
        payment_intent: intent.id,
        outcome,
        received_at: FieldValue.serverTimestamp(),
        expire_at: new Date(clock.now().getTime() + STRIPE_EVENTS_RETENTION_DAYS * DAY_MS),
      });
      return outcome;
    },
    // The grant's own reads (its record, the account, the pack's lot) come in the same round trip.
    {
      refs: [eventRef, pay, refs.topUp, refs.user],
      expected: { provider: "stripe", providerPaymentId: intent.id, lot: lotOf(payment) },
    },
  );
}

/**
 * A checkout's payment intent set up for off-session use: the card is saved on the user whose customer it is
 * (found by `stripe_customer_id`, not by metadata). The newest event wins, so a card saved by a later checkout
 * is not replaced by an older event delivered late.
 */
async function savePaymentMethod(
  deps: AutoTopUpDeps,
  event: StripeEvent,
  intent: PaymentIntent,
): Promise<PaymentIntentOutcome> {
  const customer = idOf(intent.customer);
  const method = idOf(intent.payment_method);
  if (!customer || !method) return "ignored";
  const found = await deps.db.collection(USERS).where("stripe_customer_id", "==", customer).limit(1).get();
  const userDoc = found.docs[0];
  if (!userDoc) return "ignored";
  const clock = deps.clock ?? systemClock;
  const created = event.created ?? 0;
  const outcome = await deps.db.runTransaction(async (tx) => {
    const eventRef = deps.db.collection(STRIPE_EVENTS).doc(event.id);
    const [eventSnapshot, userSnapshot] = await tx.getAll(eventRef, userDoc.ref);
    if (eventSnapshot.exists) return "duplicate" as const;
    const savedAt = Number(userSnapshot.get("stripe_payment_method_created") ?? -1);
    const outcome = created >= savedAt ? ("payment-method-saved" as const) : ("unchanged" as const);
    const { FieldValue } = firestoreValues();
    if (outcome === "payment-method-saved")
      tx.set(
        userDoc.ref,
        {
          stripe_payment_method: method,
          stripe_payment_method_created: created,
          updated_at: FieldValue.serverTimestamp(),
        },
        { merge: true },
      );
    tx.create(eventRef, {
      type: event.type,
      user_id: userDoc.id,
      payment_intent: intent.id,
      outcome,
      received_at: FieldValue.serverTimestamp(),
      expire_at: new Date(clock.now().getTime() + STRIPE_EVENTS_RETENTION_DAYS * DAY_MS),
    });
    return outcome;
  });
  if (outcome === "payment-method-saved") logs.paymentMethodSaved({ uid: userDoc.id, event_id: event.id });
  return outcome;
}
