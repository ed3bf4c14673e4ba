/**
 * The payment record `payments/{paymentId}`: what a user is buying, through
 * which checkout, and how far it got. Written only by this domain.
 *
 * Two kinds: a Checkout purchase (`kind` absent or `checkout`), and an auto
 * top-up's off-session charge (`kind: "auto_topup"`, `topup_id`, no session).
 *
 * Statuses: `pending` (checkout created, or completed but not yet paid) →
 * `succeeded` (paid and granted) | `failed` (an asynchronous payment failed).
 */
import { createHash } from "node:crypto";
import type { DocumentReference, Firestore, Timestamp } from "firebase-admin/firestore";
import type { PurchaseGrant } from "../credits";

export const PAYMENTS = "payments";

export type PaymentStatus = "pending" | "succeeded" | "failed";

/** A dispute's funds: taken from us (`withdrawn`), or given back after we won (`reinstated`, final). */
export type DisputeState = "withdrawn" | "reinstated";

/** A payment as written, before Firestore sets its timestamps. */
export type PaymentDraft = Omit<Payment, "created_at" | "updated_at">;

/** What a payment keeps of the pack it sells, as sold: later edits of config/credit_packs change nothing. */
export type PackTerms = Pick<
  Payment,
  "pack_id" | "credits" | "amount" | "currency" | "expires_after_days" | "priority"
>;

/** The terms of a pack (or of a top-up's copy of one, whose older records lack the lot terms: defaults). */
export function packTerms(pack: {
  pack_id: string;
  credits: number;
  amount: number;
  currency: string;
  expires_after_days?: number | null;
  priority?: number | null;
}): PackTerms {
  return {
    pack_id: pack.pack_id,
    credits: pack.credits,
    amount: pack.amount,
    currency: pack.currency,
    expires_after_days: pack.expires_after_days ?? null,
    priority: pack.priority ?? null,
  };
}

/** The lot a payment's credits go into, as purchaseTransaction takes it (the pack's terms as sold). */
export function lotOf(payment: Pick<Payment, "priority" | "expires_after_days">): PurchaseGrant["lot"] {
  return { priority: payment.priority, expiresAfterDays: payment.expires_after_days };
}

export interface Payment {
  user_id: string;
  pack_id: string;
  /** The pack as it was sold: later edits of config/credit_packs do not change a purchase. */
  credits: number;
  amount: number;
  currency: string;
  expires_after_days: number | null;
  priority: number | null;
  status: PaymentStatus;
  provider: "stripe";
  kind?: "checkout" | "auto_topup";
  /** The top-up this payment charges (`topups/{id}`), for `kind: "auto_topup"`. */
  topup_id?: string;
  /** Set once Stripe created the session; the webhook finds the payment by it. */
  checkout_session_id: string | null;
  checkout_url: string | null;
  /** Learnt from the session's events; refunds and disputes find the payment by it. */
  payment_intent: string | null;
  save_payment_method: boolean;
  /** Fingerprint of the createCheckoutSession request that made this payment (its idempotency key's parameters). */
  request_fingerprint: string;
  /** The ledger entry that granted the credits. */
  transaction_id: string | null;
  /**
   * Refunds and disputes (absent until the first one; see corrections.ts): the largest cumulative
   * `amount_refunded` reported, each dispute's furthest state, and the credits taken back and given back.
   */
  refunded_amount?: number;
  disputes?: Record<string, DisputeState>;
  clawed_back?: number;
  reinstated?: number;
  /** The ledger entries that took credits back or gave them back, oldest first. */
  correction_ids?: string[];
  created_at: Timestamp;
  updated_at: Timestamp;
}

/**
 * A payment's id follows from who asked and their idempotency key, so a
 * retried createCheckoutSession finds the payment it made the first time.
 */
export function paymentIdFor(uid: string, idempotencyKey: string): string {
  return `pay_${createHash("sha256").update(`${uid}\n${idempotencyKey}`).digest("hex").slice(0, 32)}`;
}

export function paymentRef(db: Firestore, paymentId: string): DocumentReference {
  return db.collection(PAYMENTS).doc(paymentId);
}
