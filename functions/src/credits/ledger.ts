/**
 * The ledger: the only code that changes a user's credits.
 *
 * A change is always one Firestore transaction that writes the user document
 * (`credits_balance`, `credits_held`, `ledger_version` + 1) and exactly one
 * ledger entry whose id is `{uid}_v{version}`, so two writers can never both
 * produce version N (the second transaction sees the first's user document and
 * retries). Firestore requires all reads of a transaction before its writes, so
 * callers read (`readAccount`, `readHold`, idempotency) first, then post.
 *
 * Deleting `users/{uid}` closes the account but keeps its ledger: the account
 * is then read from the last ledger entry (version, balance_after, held_after),
 * so versions continue and balance = Σ ledger. Entries on a closed account
 * (settling its jobs and holds) do not bring the user document back; only an
 * addition of credits (grant, purchase) re-opens it, with the kept balance.
 */
import type { DocumentReference, DocumentSnapshot, Firestore, Transaction } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import { InsufficientCredits, LedgerConflict } from "./errors";

export const USERS = "users";
export const TRANSACTIONS = "credit_transactions";

/**
 * Contended users (many concurrent spends) retry their transactions; the
 * default of 5 attempts is too few for a burst, so every credit transaction uses this.
 */
export const TRANSACTION_ATTEMPTS = 25;

export type EntryType =
  "grant" | "purchase" | "spend" | "hold" | "capture" | "release" | "refund" | "expire" | "adjust";

/** A user's credit state as read inside a transaction. */
export interface Account {
  uid: string;
  ref: DocumentReference;
  /** The user document exists. */
  exists: boolean;
  /** No user document but a ledger: a deleted account, read from its last entry. */
  closed: boolean;
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

/** A user's credits as clients, caches and mirrors see them; `available` = balance − held. */
export interface Balance {
  balance: number;
  held: number;
  available: number;
  /** The ledger version this state is at. */
  version: number;
}

/** A posted entry: what it did and the balance after it. */
export interface Posted extends Balance {
  transaction_id: string;
  type: EntryType;
  amount: number;
}

export function userRef(db: Firestore, uid: string): DocumentReference {
  return db.collection(USERS).doc(uid);
}

export function entryId(uid: string, version: number): string {
  return `${uid}_v${version}`;
}

export async function readAccount(tx: Transaction, db: Firestore, uid: string): Promise<Account> {
  const ref = userRef(db, uid);
  return accountFrom(tx, db, uid, ref, await tx.get(ref));
}

/**
 * The account for a user-document snapshot read by the caller in `tx` (e.g.
 * batched with other reads through tx.getAll). Without a document, the last
 * ledger entry is read in the same transaction (the rare path of a deleted account).
 */
export async function accountFrom(
  tx: Transaction,
  db: Firestore,
  uid: string,
  ref: DocumentReference,
  snapshot: DocumentSnapshot,
): Promise<Account> {
  if (snapshot.exists) {
    const data = snapshot.data() ?? {};
    return {
      uid,
      ref,
      exists: true,
      closed: false,
      balance: numberOr0(data.credits_balance),
      held: numberOr0(data.credits_held),
      version: numberOr0(data.ledger_version),
    };
  }
  const last = await tx.get(
    db.collection(TRANSACTIONS).where("user_id", "==", uid).orderBy("ledger_version", "desc").limit(1),
  );
  const entry = last.docs[0]?.data();
  if (!entry) return { uid, ref, exists: false, closed: false, balance: 0, held: 0, version: 0 };
  return {
    uid,
    ref,
    exists: false,
    closed: true,
    balance: numberOr0(entry.balance_after),
    held: numberOr0(entry.held_after),
    version: numberOr0(entry.ledger_version),
  };
}

/** Entries that re-open a closed account (bring its user document back); everything else is settled without it. */
const REOPENS: ReadonlySet<EntryType> = new Set(["grant", "purchase"]);

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

  const writeUser = !account.closed || REOPENS.has(change.type);
  if (writeUser) {
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
  }
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

  account.exists = writeUser;
  account.closed = !writeUser;
  account.balance = balance;
  account.held = held;
  account.version = version;
  return {
    transaction_id: transactionId,
    type: change.type,
    amount: change.amount,
    balance,
    held,
    available: balance - held,
    version,
  };
}

/**
 * Available credits right after each of the ledger `versions` of `uid`, read
 * from the immutable entries `{uid}_v{n}` (so it does not depend on when it is
 * asked); undefined for version 0 or an entry that does not exist.
 */
export async function availableAfter(
  db: Firestore,
  uid: string,
  versions: number[],
): Promise<Array<number | undefined>> {
  const wanted = versions.filter((version) => version >= 1);
  const snapshots =
    wanted.length > 0
      ? await db.getAll(...wanted.map((version) => db.collection(TRANSACTIONS).doc(entryId(uid, version))))
      : [];
  const byVersion = new Map(wanted.map((version, index) => [version, snapshots[index]]));
  return versions.map((version) => {
    const entry = byVersion.get(version);
    if (!entry?.exists) return undefined;
    return Number(entry.get("balance_after") ?? 0) - Number(entry.get("held_after") ?? 0);
  });
}

function numberOr0(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) ? value : 0;
}
