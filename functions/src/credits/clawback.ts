/**
 * Credits taken back from a payment, and given back: the entry point the
 * payments domain uses when a purchase is refunded or disputed.
 *
 * A `clawback` takes credits from the purchase's own lot first, then from the
 * user's other lots in burn order (a lot past its expiry too, until retention
 * has expired it: lots.ts), never from what open holds reserve; what
 * no lot covers becomes the user's debt (`credits_debt`), so it is the one
 * entry that may take a balance below zero (ledger.ts). A `reinstate` (a
 * dispute won) adds credits back to the lot the purchase added to (its
 * priority and expiry), paying any debt first; to that lot past its expiry,
 * the credits go back and expire at once, as a refund's do (lots.ts).
 *
 * Like a purchase, the caller's own bookkeeping (its payment record, the
 * provider event being applied, which is also what makes the change happen
 * once) commits in the same transaction as the entry: the caller reads, then
 * decides the amount from what it read, then posts through `correct`, then
 * writes.
 */
import type { Transaction } from "firebase-admin/firestore";
import type { IdempotentDeps } from "./idempotency";
import { accountFrom, postEntry, readLotsFor, TRANSACTIONS, userRef, type Change, type Posted } from "./ledger";
import { DEFAULT_PRIORITY, lotIdOf, lotTermsOf, readLots, type Allocation, type LotMove, type LotSource } from "./lots";
import { lockedCreditTransaction } from "./user-lock";
import { systemClock } from "../shared/time";

export interface PaymentCorrection {
  type: "clawback" | "reinstate";
  /** The payment provider, e.g. `stripe`: the entry's actor. */
  provider: string;
  /** Our payment record (`payments/{paymentId}`), recorded on the entry as `payment_id`. */
  paymentId: string;
  /** The provider event applied: the entry's idempotency key. */
  eventId: string;
  /** Credits taken back or given back; positive. */
  credits: number;
  /** The purchase entry that granted the payment's credits: its lots pay a clawback first. */
  purchaseEntryId: string | null;
  reason: string;
}

/** Posts one correction inside the running transaction; see paymentCorrectionTransaction. */
export type CorrectPayment = (correction: PaymentCorrection) => Promise<Posted>;

/** Where purchased credits go (purchase.ts): a reinstate returns them there. */
function purchaseLotId(uid: string): string {
  return lotIdOf(uid, "purchase", DEFAULT_PRIORITY.purchase, null);
}

/** Where a reinstate puts credits back: the purchase's own lot when it has one (`terms`), else the default. */
type ReinstateTo = {
  lotId: string;
  terms: { source: LotSource; priority: number; expiresAt: Date | null; lapsed: boolean };
} | null;

/**
 * The ledger change of a correction: a clawback takes from `purchaseLots` (the lots the purchase entry added
 * to) first; a reinstate adds to the purchase's lot (`reinstateTo`), or returns to it when it is past its
 * expiry (the ledger expires them at once), or, for a purchase that added to no lot (it all paid a debt), adds
 * to the default purchase lot. Also used by purchase.ts when a refund or dispute reported before the grant is
 * taken back in the grant's own transaction.
 */
export function correctionChange(
  uid: string,
  correction: PaymentCorrection,
  purchaseLots: string[],
  reinstateTo: ReinstateTo = null,
): Change {
  return {
    type: correction.type,
    amount: correction.type === "clawback" ? -correction.credits : correction.credits,
    heldDelta: 0,
    actor: `${correction.provider}:${correction.eventId}`,
    reason: correction.reason,
    idempotencyKey: correction.eventId,
    paymentId: correction.paymentId,
    metadata: { payment_id: correction.paymentId, provider: correction.provider },
    lots:
      correction.type === "clawback"
        ? { kind: "clawback", first: purchaseLots.length > 0 ? purchaseLots : [purchaseLotId(uid)] }
        : reinstateLots(reinstateTo, correction.credits),
  };
}

function reinstateLots(to: ReinstateTo, credits: number): LotMove {
  if (!to) return { kind: "add", source: "purchase", priority: DEFAULT_PRIORITY.purchase, expiresAt: null };
  if (to.terms.lapsed) return { kind: "return", to: [{ lot_id: to.lotId, amount: credits }] };
  return { kind: "add", source: to.terms.source, priority: to.terms.priority, expiresAt: to.terms.expiresAt };
}

/**
 * Runs `body` as one credit transaction for `uid` (user lock, then a
 * Firestore transaction with the ledger's retry budget), handing it
 * `correct`. `body` does its reads, calls `correct` at most once (which reads
 * the account, the purchase entry and the lots, then writes the entry), then
 * writes its own documents.
 */
export function paymentCorrectionTransaction<R>(
  deps: IdempotentDeps,
  uid: string,
  body: (tx: Transaction, correct: CorrectPayment) => Promise<R>,
): Promise<R> {
  const clock = deps.clock ?? systemClock;
  return lockedCreditTransaction(deps.db, deps.lock, uid, (tx) =>
    body(tx, async (correction) => {
      if (!Number.isSafeInteger(correction.credits) || correction.credits <= 0)
        throw new Error(
          `paymentCorrectionTransaction: ${correction.credits} is not a positive whole number of credits`,
        );
      const accountRef = userRef(deps.db, uid);
      const purchaseRef = deps.db.collection(TRANSACTIONS).doc(correction.purchaseEntryId ?? "-");
      const [accountSnapshot, purchaseSnapshot] = await tx.getAll(accountRef, purchaseRef);
      const account = await accountFrom(tx, deps.db, uid, accountRef, accountSnapshot);
      const purchaseLots = ((purchaseSnapshot.get("allocations") ?? []) as Allocation[]).map((part) => part.lot_id);
      const now = clock.now();
      let reinstateTo: ReinstateTo = null;
      if (correction.type === "reinstate" && purchaseLots.length > 0) {
        // The purchase's lot first: its terms say where the credits go back.
        const book = await readLots(tx, deps.db, account, { ids: [purchaseLots[0]], draw: 0 }, now);
        const terms = lotTermsOf(book, purchaseLots[0]);
        if (terms) reinstateTo = { lotId: purchaseLots[0], terms };
      }
      const change = correctionChange(uid, correction, purchaseLots, reinstateTo);
      await readLotsFor(tx, deps.db, account, change, now);
      return postEntry(tx, deps.db, account, change).posted;
    }),
  );
}
