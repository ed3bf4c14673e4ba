/**
 * The ledger: the only code that changes a user's credits.
 *
 * A change is always one Firestore transaction that writes the user document
 * (`credits_balance`, `credits_held`, `ledger_version` + 1) and exactly one
 * ledger entry whose id is `{uid}_v{version}`, so two writers can never both
 * produce version N (the second transaction sees the first's user document and
 * retries). Firestore requires all reads of a transaction before its writes, so
 * callers read (`readAccount`, `readHold`, idempotency) first, then post.
 */
import type { DocumentReference, DocumentSnapshot, Firestore, Transaction } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import { InsufficientCredits, LedgerConflict } from "./errors";

export const USERS = "users";
export const TRANSACTIONS = "credit_transactions";

export type EntryType = "grant" | "purchase" | "spend" | "hold" | "capture" | "release" | "refund" | "expire" | "adjust";

/** A user's credit state as read inside a transaction. */
export interface Account {
  uid: string;
  ref: DocumentReference;
  exists: boolean;
  balance: number;
  held: number;
  version: number;
}

export interface Change {
  type: EntryType;
  /** Signed change of `credits_balance`. */
  amount: number;
  /** Signed change of `credits_held`. */
  heldDelta: number;
  actor: string;
  reason: string;
  idempotencyKey: string;
  jobId?: string;
  holdId?: string;
  feature?: string;
  quantity?: number;
  refundOf?: string;
  metadata?: Record<string, string | number | boolean>;
}

export interface Posted {
  transaction_id: string;
  type: EntryType;
  amount: number;
  balance: number;
  held: number;
  available: number;
  version: number;
}

export function userRef(db: Firestore, uid: string): DocumentReference {
  return db.collection(USERS).doc(uid);
}

export function entryId(uid: string, version: number): string {
  return `${uid}_v${version}`;
}

export async function readAccount(tx: Transaction, db: Firestore, uid: string): Promise<Account> {
  const ref = userRef(db, uid);
  return accountFrom(uid, ref, await tx.get(ref));
}

/** The account in a snapshot read by the caller (e.g. batched with other reads through tx.getAll). */
export function accountFrom(uid: string, ref: DocumentReference, snapshot: DocumentSnapshot): Account {
  const data = snapshot.data() ?? {};
  return {
    uid,
    ref,
    exists: snapshot.exists,
    balance: numberOr0(data.credits_balance),
    held: numberOr0(data.credits_held),
    version: numberOr0(data.ledger_version),
  };
}

export function available(account: Pick<Account, "balance" | "held">): number {
  return account.balance - account.held;
}

/**
 * Checks the invariants for `change`, writes the user document and the ledger
 * entry, and returns the new state. `account` is updated in place so a caller
 * may post again in the same transaction.
 */
export function postEntry(tx: Transaction, db: Firestore, account: Account, change: Change): Posted {
  const balance = account.balance + change.amount;
  const held = account.held + change.heldDelta;
  if (!Number.isSafeInteger(balance) || !Number.isSafeInteger(held)) {
    throw new LedgerConflict("Credit amounts must stay whole numbers within safe range.");
  }
  if (held < 0) throw new LedgerConflict("A hold cannot release more than is held.");
  if (balance - held < 0) {
    // What the request needed on top of what stays reserved.
    throw new InsufficientCredits(available(account), Math.max(0, -change.amount) + Math.max(0, change.heldDelta));
  }
  const version = account.version + 1;
  const { FieldValue } = firestoreValues();
  const now = FieldValue.serverTimestamp();
  const transactionId = entryId(account.uid, version);

  tx.set(
    account.ref,
    {
      credits_balance: balance,
      credits_held: held,
      ledger_version: version,
      updated_at: now,
      updated_by: change.actor,
      ...(account.exists ? {} : { created_at: now, tier: "free" }),
    },
    { merge: true },
  );
  tx.create(db.collection(TRANSACTIONS).doc(transactionId), {
    user_id: account.uid,
    type: change.type,
    amount: change.amount,
    held_delta: change.heldDelta,
    balance_after: balance,
    held_after: held,
    ledger_version: version,
    idempotency_key: change.idempotencyKey,
    actor: change.actor,
    reason: change.reason,
    job_id: change.jobId ?? null,
    hold_id: change.holdId ?? null,
    feature: change.feature ?? null,
    quantity: change.quantity ?? null,
    refund_of: change.refundOf ?? null,
    metadata: change.metadata ?? {},
    created_at: now,
  });

  account.exists = true;
  account.balance = balance;
  account.held = held;
  account.version = version;
  return { transaction_id: transactionId, type: change.type, amount: change.amount, balance, held, available: balance - held, version };
}

function numberOr0(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) ? value : 0;
}
