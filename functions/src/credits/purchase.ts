/**
 * Purchased credits: the entry point a payment provider's domain (payments/)
 * uses to turn a paid payment into credits.
 *
 * A purchase is granted at most once per provider payment (a Stripe payment
 * intent): the grant's idempotency record is keyed by it, so however many of a
 * provider's events report the same payment, and in whatever order, one
 * `purchase` entry is posted. The caller's own bookkeeping (its payment record,
 * the provider event it is applying) commits in the same transaction as the
 * entry, so "paid, recorded and granted" is one fact. Purchased credits go
 * into a lot of source `purchase` with the pack's priority and expiry
 * (default: priority 80, never expire, so they burn last); see purchaseLot.
 */
import type { DocumentReference, DocumentSnapshot, Firestore, Transaction } from "firebase-admin/firestore";
import {
  idempotencyFrom,
  idempotencyRef,
  recordIdempotency,
  type IdempotencyScope,
  type IdempotentDeps,
} from "./idempotency";
import { accountFrom, postEntry, readLotsFor, userRef, type Change, type Posted } from "./ledger";
import { correctionChange } from "./clawback";
import { DEFAULT_PRIORITY, lotIdOf, lotRef, type LotMove } from "./lots";
import { lockedCreditTransaction } from "./user-lock";
import { readAhead } from "../shared/read-ahead";
import { DAY_MS, systemClock } from "../shared/time";

export interface PurchaseGrant {
  /** The payment provider, e.g. `stripe`; names the key space and the entry's actor. */
  provider: string;
  /** The provider's id of the payment (a Stripe payment intent): a purchase is granted once per id. */
  providerPaymentId: string;
  /** Our payment record (`payments/{paymentId}`). */
  paymentId: string;
  credits: number;
  reason: string;
  /**
   * The lot the credits go into, as the pack sold describes it: `priority` (0–100; default 80) and
   * `expiresAfterDays` (null: never). Purchases with the same terms granted the same UTC day share a lot.
   */
  lot?: { priority?: number | null; expiresAfterDays?: number | null };
  /**
   * Credits the payment already lost to refunds or disputes reported before it was granted (Stripe events
   * arrive in any order): taken back by one `clawback` entry right after the purchase, in the same transaction,
   * from the purchase's own lot first. `eventId` is the event that grants (the entry's idempotency key).
   */
  clawBack?: { credits: number; eventId: string; reason: string };
}

/**
 * The posted purchase entry and the balance after it; `replayed` when this payment was granted before.
 * `clawback`: the entry that took back `clawBack`, when one was asked for and posted.
 */
export interface PurchaseResult extends Posted {
  replayed: boolean;
  clawback?: Posted;
}

/** Grants a purchase inside the running transaction; see purchaseTransaction. */
export type GrantPurchase = (grant: PurchaseGrant) => Promise<PurchaseResult>;

/**
 * The lot a purchase adds to: the pack's priority (default 80) and expiry, `expiresAfterDays` after `now`
 * rounded up to the next UTC midnight, so a day's purchases of one pack share one lot (issue 12: lots of the
 * same source, priority and expiry are one lot), which keeps the lots a spend must read few.
 */
export function purchaseLot(grant: Pick<PurchaseGrant, "lot">, now: Date): Extract<LotMove, { kind: "add" }> {
  const priority = grant.lot?.priority ?? DEFAULT_PRIORITY.purchase;
  const days = grant.lot?.expiresAfterDays ?? null;
  if (!Number.isInteger(priority) || priority < 0 || priority > 100)
    throw new Error(`purchaseTransaction: lot priority ${priority} is not a whole number from 0 to 100`);
  if (days !== null && (!Number.isInteger(days) || days <= 0))
    throw new Error(`purchaseTransaction: ${days} is not a positive whole number of days`);
  const expiresAt = days === null ? null : new Date(Math.ceil((now.getTime() + days * DAY_MS) / DAY_MS) * DAY_MS);
  return { kind: "add", source: "purchase", priority, expiresAt };
}

/** The lot a purchase change adds to. */
function purchaseLotOf(uid: string, change: Change): string {
  if (change.lots.kind !== "add") throw new Error("a purchase adds a lot");
  return lotIdOf(uid, change.lots.source, change.lots.priority, change.lots.expiresAt);
}

function purchaseScope(uid: string, grant: PurchaseGrant): IdempotencyScope {
  return {
    ...purchaseKey(uid, grant),
    operation: "purchase",
    params: { payment_id: grant.paymentId, credits: grant.credits },
  };
}

function purchaseKey(uid: string, grant: Pick<PurchaseGrant, "provider" | "providerPaymentId">) {
  return { owner: `${grant.provider}>${uid}`, key: grant.providerPaymentId };
}

/** The purchase a caller expects `body` to grant, known before the transaction starts. */
export type ExpectedPurchase = Pick<PurchaseGrant, "provider" | "providerPaymentId" | "lot">;

/** What purchaseTransaction reads in the transaction's first round trip, before `body` runs. */
export interface PurchaseReads {
  /** The caller's own documents, handed to `body` in this order. */
  refs?: DocumentReference[];
  /**
   * The grant `body` will likely make: its idempotency record, the account and the lot it adds to are read in
   * the same round trip, and the grant's own reads of them are answered from there (shared/read-ahead.ts).
   * A wrong guess costs only those reads; the grant then reads what it needs.
   */
  expected?: ExpectedPurchase;
}

/** The documents granting `expected` reads (see PurchaseReads). */
function expectedRefs(db: Firestore, uid: string, expected: ExpectedPurchase, now: Date): DocumentReference[] {
  const lot = purchaseLot(expected, now);
  return [
    idempotencyRef(db, purchaseKey(uid, expected)),
    userRef(db, uid),
    lotRef(db, lotIdOf(uid, lot.source, lot.priority, lot.expiresAt)),
  ];
}

/**
 * Runs `body` as one credit transaction for `uid` (the user lock, then a
 * Firestore transaction with the ledger's retry budget), handing it `grant`
 * and the snapshots of `reads.refs`.
 *
 * Firestore wants every read of a transaction before its first write, so
 * `body` reads what it needs, calls `grant` at most once (which reads the
 * payment's idempotency record, the account and the lot, then writes the
 * entry, the user document, the lot and the record), and only then writes its
 * own documents. A payment granted before answers its first result with
 * `replayed: true` and writes nothing. With `reads`, the caller's documents
 * and the expected grant's are read in one round trip (a webhook's whole
 * transaction is then that read and the commit).
 */
export function purchaseTransaction<R>(
  deps: IdempotentDeps,
  uid: string,
  body: (tx: Transaction, grant: GrantPurchase, read: DocumentSnapshot[]) => Promise<R>,
  reads: PurchaseReads = {},
): Promise<R> {
  const clock = deps.clock ?? systemClock;
  return lockedCreditTransaction(deps.db, deps.lock, uid, async (started) => {
    const own = reads.refs ?? [];
    const expected = reads.expected ? expectedRefs(deps.db, uid, reads.expected, clock.now()) : [];
    const { tx, snapshots } = await readAhead(started, [...own, ...expected]);
    return body(tx, grantIn(tx), snapshots.slice(0, own.length));
  });

  function grantIn(tx: Transaction): GrantPurchase {
    return async (grant) => {
      const scope = purchaseScope(uid, grant);
      const keyRef = idempotencyRef(deps.db, scope);
      const accountRef = userRef(deps.db, uid);
      const [keySnapshot, accountSnapshot] = await tx.getAll(keyRef, accountRef);
      const check = idempotencyFrom<Posted>(keyRef, scope, keySnapshot);
      if (check.replay) return { ...check.replay, replayed: true };
      const account = await accountFrom(tx, deps.db, uid, accountRef, accountSnapshot);
      const change: Change = {
        type: "purchase",
        amount: grant.credits,
        heldDelta: 0,
        actor: `${grant.provider}:${grant.providerPaymentId}`,
        reason: grant.reason,
        idempotencyKey: grant.providerPaymentId,
        metadata: { payment_id: grant.paymentId, provider: grant.provider },
        lots: purchaseLot(grant, clock.now()),
      };
      const now = clock.now();
      await readLotsFor(tx, deps.db, account, change, now);
      const lost = grant.clawBack;
      if (lost && (!Number.isSafeInteger(lost.credits) || lost.credits <= 0 || lost.credits > grant.credits))
        throw new Error(`purchaseTransaction: cannot claw back ${lost.credits} of ${grant.credits} credits`);
      // Every read before the first write: the clawback's lots (the purchase lot, then burn order) too.
      const correction = lost
        ? correctionChange(
            uid,
            {
              type: "clawback",
              provider: grant.provider,
              paymentId: grant.paymentId,
              purchaseEntryId: null,
              ...lost,
            },
            [purchaseLotOf(uid, change)],
          )
        : null;
      if (correction) await readLotsFor(tx, deps.db, account, correction, now);
      const { posted } = postEntry(tx, deps.db, account, change);
      recordIdempotency(tx, check, scope, posted, now);
      const clawback = correction ? postEntry(tx, deps.db, account, correction).posted : undefined;
      return { ...posted, replayed: false, ...(clawback ? { clawback } : {}) };
    };
  }
}
