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
 *
 * Every entry also says which credit lots it moved (`allocations`, and
 * `held_allocations` for reservations); the ledger decides them from the lots
 * read in the same transaction (lots.ts), so the lots always add up to the
 * user document: Σ remaining = balance, Σ held = held.
 */
import type { DocumentReference, DocumentSnapshot, Firestore, Transaction } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import { forgetCommitted } from "./committed-state";
import { AccountClosed, InsufficientCredits, LedgerConflict, NegativeBalance } from "./errors";
import {
  isLapsed,
  lotWrites,
  markExpired,
  moveLots,
  needOf,
  readLots,
  unheldOf,
  type Allocation,
  type LotBook,
  type LotMove,
} from "./lots";
import { createTopUp, topUpDue } from "./topup";

export const USERS = "users";
export const TRANSACTIONS = "credit_transactions";

/**
 * Contended users (many concurrent spends) retry their transactions; the
 * default of 5 attempts is too few for a burst, so every credit transaction uses this.
 */
export const TRANSACTION_ATTEMPTS = 25;

/** Whole-transaction retries after the emulator closed a transaction under us (see runCreditTransaction). */
const CLOSED_TRANSACTION_RETRIES = 10;

/**
 * Runs a credit transaction with the ledger's retry budget. A change reads in
 * more than one round trip (the account, then its lots), and the Firestore
 * emulator answers a read of a transaction it has already aborted for
 * contention with INVALID_ARGUMENT "Transaction is invalid or closed", which
 * the SDK does not retry (Firestore itself says ABORTED, which it does).
 * Nothing was committed then, so the transaction is run again.
 */
export async function runCreditTransaction<T>(db: Firestore, work: (tx: Transaction) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await db.runTransaction(work, { maxAttempts: TRANSACTION_ATTEMPTS });
    } catch (error) {
      if (attempt >= CLOSED_TRANSACTION_RETRIES || !closedUnderUs(error)) throw error;
    }
  }
}

function closedUnderUs(error: unknown): boolean {
  return (
    error instanceof Error &&
    (error as Error & { code?: unknown }).code === 3 &&
    /transaction is invalid or closed/i.test(error.message)
  );
}

export type EntryType =
  | "grant"
  | "purchase"
  | "spend"
  | "hold"
  | "capture"
  | "release"
  | "refund"
  | "expire"
  | "adjust"
  /** Credits taken back because a payment was refunded or disputed (payments/); the only entry that may owe. */
  | "clawback"
  /** Credits a won dispute gives back. */
  | "reinstate";

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
  /**
   * Credits a clawback could not find in any lot (`credits_debt`): Σ lots.remaining − debt = balance.
   * While it is owed, nothing may draw credits (NegativeBalance); the next addition pays it first.
   */
  debt: number;
  /** The user's credits are in lots (false: they predate lots and the legacy lot is still to be made). */
  lotsReady: boolean;
  /** The user document records since which version the user has lots (`lots_since_version`). */
  lotsMarked: boolean;
  /** The lots read in this transaction (readLotsFor). */
  lots?: LotBook;
  /** The user document's other fields as read (e.g. the plan's allowance state); empty without a document. */
  fields: Record<string, unknown>;
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
  /** The payment a clawback or reinstate corrects (`payments/{id}`). */
  paymentId?: string;
  metadata?: Record<string, string | number | boolean>;
  /** How the change moves lots; the ledger decides the allocations. */
  lots: LotMove;
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

/** A posted entry with the lots it moved. */
export interface Entry {
  posted: Posted;
  allocations: Allocation[];
  heldAllocations: Allocation[];
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
    const marked = typeof data.lots_since_version === "number";
    return {
      uid,
      ref,
      exists: true,
      closed: false,
      balance: numberOr0(data.credits_balance),
      held: numberOr0(data.credits_held),
      version: numberOr0(data.ledger_version),
      debt: numberOr0(data.credits_debt),
      lotsReady: marked,
      lotsMarked: marked,
      fields: data,
    };
  }
  const last = await tx.get(
    db.collection(TRANSACTIONS).where("user_id", "==", uid).orderBy("ledger_version", "desc").limit(1),
  );
  const entry = last.docs[0]?.data();
  if (!entry)
    return {
      uid,
      ref,
      exists: false,
      closed: false,
      balance: 0,
      held: 0,
      version: 0,
      debt: 0,
      lotsReady: true,
      lotsMarked: false,
      fields: {},
    };
  return {
    uid,
    ref,
    exists: false,
    closed: true,
    balance: numberOr0(entry.balance_after),
    held: numberOr0(entry.held_after),
    version: numberOr0(entry.ledger_version),
    debt: numberOr0(entry.debt_after),
    // Entries written since lots began carry allocations.
    lotsReady: Array.isArray(entry.allocations),
    lotsMarked: false,
    fields: {},
  };
}

/** Entries that re-open a closed account (bring its user document back); everything else is settled without it. */
const REOPENS: ReadonlySet<EntryType> = new Set(["grant", "purchase", "reinstate"]);

/**
 * Entries that may take available credits below zero: a clawback (money that
 * went back to the payer is taken back whatever was spent since), and the
 * expiry of unheld credits that exist in a lot (it never creates debt).
 */
const MAY_GO_NEGATIVE: ReadonlySet<EntryType> = new Set(["clawback", "expire"]);

export function available(account: Pick<Account, "balance" | "held">): number {
  return account.balance - account.held;
}

/**
 * Reads the lots `change` needs (phase one of a change: call it with the
 * transaction's other reads, before any write). `now` decides which lots are
 * past their expiry.
 */
export async function readLotsFor(
  tx: Transaction,
  db: Firestore,
  account: Account,
  change: Pick<Change, "lots" | "amount" | "heldDelta">,
  now: Date,
): Promise<void> {
  await readLots(tx, db, account, needOf(account.uid, change.lots, change.amount, change.heldDelta), now);
}

/** The actor and reason of the entries that expire credits returned to a lot past its expiry. */
const LAPSE_ACTOR = "system:ledger";
export const LOT_EXPIRED = "lot-expired";

/**
 * Checks the invariants for `change`, writes the user document, the ledger
 * entry and the lots it moved, and returns the new state. The lots must have
 * been read (readLotsFor) in this transaction. Credits returned to a lot past
 * its expiry (a release or refund) expire at once, each lot with its own
 * `expire` entry after this one. `account` is updated in place.
 */
export function postEntry(tx: Transaction, db: Firestore, account: Account, change: Change): Entry {
  const book = account.lots;
  if (!book) throw new Error("postEntry: the lots were not read in this transaction (readLotsFor)");
  // What this instance remembers of the user is older than this change (a guarded spend remembers again once
  // its commit has succeeded).
  forgetCommitted(db, account.uid);
  const entry = postOne(tx, db, account, book, change);
  for (const lotId of entry.lapsed)
    expireUnheld(tx, db, account, book, lotId, LAPSE_ACTOR, `lapse:${lotId}:${entry.posted.version}`);
  lotWrites(tx, book);
  return { posted: entry.posted, allocations: entry.allocations, heldAllocations: entry.heldAllocations };
}

/**
 * Expires what `lotId` has unheld (after its expiry): one `expire` entry, or
 * just the lot's status when nothing unheld is left. The lot must have been
 * read; the caller writes the lots (lotWrites) unless it goes through postEntry.
 */
function expireUnheld(
  tx: Transaction,
  db: Firestore,
  account: Account,
  book: LotBook,
  lotId: string,
  actor: string,
  idempotencyKey: string,
): Posted | null {
  const unheld = unheldOf(book, lotId);
  if (unheld === 0) {
    markExpired(book, lotId);
    return null;
  }
  return postOne(tx, db, account, book, {
    type: "expire",
    amount: -unheld,
    heldDelta: 0,
    actor,
    reason: LOT_EXPIRED,
    idempotencyKey,
    lots: { kind: "lapse", lotId },
  }).posted;
}

/**
 * Expires a lot past its expiry (the retention policy's action, through
 * lot-expiry.ts): its unheld credits with one `expire` entry (`lot_id`), its
 * held ones later, when their holds are released. The lot must have been read
 * (readLotsFor with `{kind: "lapse"}`); returns null when nothing was due.
 */
export function expireLot(
  tx: Transaction,
  db: Firestore,
  account: Account,
  lotId: string,
  actor: string,
): Posted | null {
  const book = account.lots;
  if (!book) throw new Error("expireLot: the lot was not read in this transaction (readLotsFor)");
  if (!isLapsed(book, lotId)) return null;
  forgetCommitted(db, account.uid); // as in postEntry
  const posted = expireUnheld(tx, db, account, book, lotId, actor, `expire:${lotId}`);
  lotWrites(tx, book);
  return posted;
}

function postOne(
  tx: Transaction,
  db: Firestore,
  account: Account,
  book: LotBook,
  change: Change,
): Entry & { lapsed: string[] } {
  const balance = account.balance + change.amount;
  const held = account.held + change.heldDelta;
  if (!Number.isSafeInteger(balance) || !Number.isSafeInteger(held)) {
    throw new LedgerConflict("Credit amounts must stay whole numbers within safe range.");
  }
  if (held < 0) throw new LedgerConflict("A hold cannot release more than is held.");
  // A closed account draws nothing (spends, holds, negative adjustments): the refusal says so, not "insufficient".
  if (account.closed && change.lots.kind === "draw") throw new AccountClosed(account.balance);
  // A user who owes credits draws nothing (spends, holds, negative adjustments) until an addition pays the debt.
  if (account.debt > 0 && change.lots.kind === "draw") {
    throw new NegativeBalance(account.balance, available(account), account.debt);
  }
  // Settling an existing hold while owing (capture, release) never lowers available, so it goes through.
  const lowers = change.amount - change.heldDelta < 0;
  if (balance - held < 0 && lowers && !MAY_GO_NEGATIVE.has(change.type)) {
    // What the request needed on top of what stays reserved.
    throw new InsufficientCredits(available(account), Math.max(0, -change.amount) + Math.max(0, change.heldDelta));
  }
  const version = account.version + 1;
  const { FieldValue } = firestoreValues();
  const now = FieldValue.serverTimestamp();
  const transactionId = entryId(account.uid, version);
  // Decided before anything is written: a change the lots cannot cover is refused here.
  const moved = moveLots(book, change.lots, change.amount, change.heldDelta, version, transactionId, account.debt);
  const debt = account.debt + moved.debtDelta;
  // Written only where debt is in play, so entries and users that never owed keep their shape.
  const debtFields = moved.debtDelta !== 0 || account.debt > 0;

  const writeUser = !account.closed || REOPENS.has(change.type);
  // Auto top-up is decided here, for every change, from the user document this transaction read (topup.ts).
  const topUp = writeUser
    ? topUpDue(
        account.fields,
        { type: change.type, uid: account.uid, version, transactionId },
        available(account),
        balance - held,
        book.now,
      )
    : null;
  if (writeUser) {
    tx.set(
      account.ref,
      {
        credits_balance: balance,
        credits_held: held,
        ledger_version: version,
        ...(debtFields ? { credits_debt: debt } : {}),
        updated_at: now,
        updated_by: change.actor,
        // Since this version the user's credits are in lots (a legacy lot holds what came before).
        ...(account.lotsMarked ? {} : { lots_since_version: account.version }),
        ...(account.exists ? {} : { created_at: now, tier: "free" }),
        ...(topUp ? { auto_topup: topUp.state } : {}),
      },
      { merge: true },
    );
  }
  if (topUp) {
    createTopUp(tx, db, topUp);
    account.fields = { ...account.fields, auto_topup: topUp.state };
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
    ...(change.paymentId ? { payment_id: change.paymentId } : {}),
    metadata: change.metadata ?? {},
    allocations: moved.allocations,
    held_allocations: moved.heldAllocations,
    ...(debtFields ? { debt_delta: moved.debtDelta, debt_after: debt } : {}),
    lot_id: change.lots.kind === "lapse" ? change.lots.lotId : null,
    created_at: now,
  });

  account.exists = writeUser;
  account.lotsMarked ||= writeUser;
  account.lotsReady = true;
  account.closed = !writeUser;
  account.balance = balance;
  account.held = held;
  account.version = version;
  account.debt = debt;
  return {
    posted: {
      transaction_id: transactionId,
      type: change.type,
      amount: change.amount,
      balance,
      held,
      available: balance - held,
      version,
    },
    allocations: moved.allocations,
    heldAllocations: moved.heldAllocations,
    lapsed: moved.lapsed,
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
