/**
 * Holds: credits reserved for a job, settled exactly once.
 *
 * `placeHold` reserves (an entry of type `hold`: balance unchanged, held +amount).
 * Settling moves the hold from `open` to its final status in the same
 * transaction as its ledger entry, and only from `open`: a second settle of any
 * kind finds it settled and changes nothing.
 *   capture: takes the actual cost (≤ the hold) and releases the rest
 *   release: returns the whole amount to available (failure, cancel)
 *   expire:  like release, for holds past `expires_at` (ttlCleanup; a job's
 *            hold expires only through its job, see jobs/expiry.ts)
 * Every step is composable into a caller's transaction (jobs change the job's
 * state in the same transaction), with `settleHold` as the standalone form.
 *
 * A hold reserves from credit lots in burn order and records which
 * (`allocations`); its settlement releases exactly those, and a capture spends
 * from them. Credits a release returns to a lot past its expiry expire then
 * (ledger.ts): held credits never expire under a running job.
 */
import type { DocumentReference, Firestore, Transaction } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import { DomainError, NotFound } from "../shared/errors";
import type { Clock } from "../shared/time";
import { systemClock } from "../shared/time";
import { postEntry, readAccount, readLotsFor, runCreditTransaction, type Account, type Posted } from "./ledger";
import { heldAllocationsOf, type Allocation } from "./lots";

export const HOLDS = "credit_holds";

export type HoldStatus = "open" | "captured" | "released" | "expired";

export interface Hold {
  id: string;
  ref: DocumentReference;
  userId: string;
  amount: number;
  status: HoldStatus;
  jobId: string | null;
  expiresAt: Date;
  /** The lots it reserved from. */
  allocations: Allocation[];
}

export interface PlaceHold {
  holdId: string;
  amount: number;
  expiresAt: Date;
  actor: string;
  reason: string;
  idempotencyKey: string;
  jobId?: string;
}

export type Settlement = { kind: "capture"; cost: number } | { kind: "release" } | { kind: "expire" };

export interface SettleResult {
  /** False when the hold was already settled; nothing was written. */
  settled: boolean;
  status: HoldStatus;
  posted?: Posted;
}

export function holdRef(db: Firestore, holdId: string): DocumentReference {
  return db.collection(HOLDS).doc(holdId);
}

/**
 * Reserves credits from the account's lots in burn order; the account must
 * have been read in this transaction, and nothing written in it yet (the lots
 * are read here). Throws InsufficientCredits.
 */
export async function placeHold(
  tx: Transaction,
  db: Firestore,
  account: Account,
  hold: PlaceHold,
  clock: Clock = systemClock,
): Promise<Posted> {
  const change = {
    type: "hold",
    amount: 0,
    heldDelta: hold.amount,
    actor: hold.actor,
    reason: hold.reason,
    idempotencyKey: hold.idempotencyKey,
    jobId: hold.jobId,
    holdId: hold.holdId,
    lots: { kind: "draw" },
  } as const;
  await readLotsFor(tx, db, account, change, clock.now());
  const { posted, heldAllocations } = postEntry(tx, db, account, change);
  const { FieldValue, Timestamp } = firestoreValues();
  tx.create(holdRef(db, hold.holdId), {
    user_id: account.uid,
    amount: hold.amount,
    status: "open",
    job_id: hold.jobId ?? null,
    expires_at: Timestamp.fromDate(hold.expiresAt),
    created_at: FieldValue.serverTimestamp(),
    placed_by: posted.transaction_id,
    allocations: heldAllocations,
    settled_at: null,
    captured_amount: null,
  });
  return posted;
}

export async function readHold(tx: Transaction, db: Firestore, holdId: string): Promise<Hold> {
  const ref = holdRef(db, holdId);
  const snapshot = await tx.get(ref);
  if (!snapshot.exists) throw new NotFound(`Hold ${holdId}`);
  const data = snapshot.data() ?? {};
  return {
    id: holdId,
    ref,
    userId: String(data.user_id),
    amount: Number(data.amount),
    status: data.status as HoldStatus,
    jobId: (data.job_id as string | null) ?? null,
    expiresAt: (data.expires_at as { toDate(): Date }).toDate(),
    allocations: heldAllocationsOf(String(data.user_id), data.allocations, Number(data.amount)),
  };
}

/**
 * Reads the lots settling `hold` moves (its reservation); call with the
 * transaction's other reads, before settleHoldInTransaction. `clock` decides
 * which of them are past their expiry.
 */
export async function readHoldLots(
  tx: Transaction,
  db: Firestore,
  hold: Hold,
  account: Account,
  clock: Clock = systemClock,
): Promise<void> {
  if (hold.status !== "open") return;
  await readLotsFor(
    tx,
    db,
    account,
    { amount: 0, heldDelta: 0, lots: { kind: "settle", held: hold.allocations } },
    clock.now(),
  );
}

/** Settles an open hold inside the caller's transaction (hold, account and readHoldLots already read). */
export function settleHoldInTransaction(
  tx: Transaction,
  db: Firestore,
  hold: Hold,
  account: Account,
  settlement: Settlement,
  actor: string,
  reason: string,
): SettleResult {
  if (hold.status !== "open") return { settled: false, status: hold.status };
  if (settlement.kind === "capture") {
    if (!Number.isSafeInteger(settlement.cost) || settlement.cost < 0 || settlement.cost > hold.amount) {
      throw new DomainError(
        "invalid-argument",
        `A capture must be a whole number between 0 and the hold (${hold.amount}).`,
        {
          reason: "capture-exceeds-hold",
          hold: hold.amount,
          cost: settlement.cost,
        },
      );
    }
  }
  const status: HoldStatus =
    settlement.kind === "capture" ? "captured" : settlement.kind === "release" ? "released" : "expired";
  const cost = settlement.kind === "capture" ? settlement.cost : 0;
  const { posted } = postEntry(tx, db, account, {
    type: settlement.kind,
    amount: cost > 0 ? -cost : 0, // never -0 in the ledger
    heldDelta: -hold.amount,
    actor,
    reason,
    idempotencyKey: `${settlement.kind}:${hold.id}`,
    jobId: hold.jobId ?? undefined,
    holdId: hold.id,
    lots: { kind: "settle", held: hold.allocations },
  });
  const { FieldValue } = firestoreValues();
  tx.update(hold.ref, {
    status,
    captured_amount: cost,
    settled_at: FieldValue.serverTimestamp(),
    settled_by: posted.transaction_id,
  });
  hold.status = status;
  return { settled: true, status, posted };
}

/** Settles a hold in its own transaction; a no-op when it is already settled. */
export async function settleHold(
  db: Firestore,
  holdId: string,
  settlement: Settlement,
  actor: string,
  reason: string,
  clock: Clock = systemClock,
): Promise<SettleResult> {
  return runCreditTransaction(db, async (tx) => {
    const hold = await readHold(tx, db, holdId);
    if (hold.status !== "open") return { settled: false, status: hold.status };
    const account = await readAccount(tx, db, hold.userId);
    await readHoldLots(tx, db, hold, account, clock);
    return settleHoldInTransaction(tx, db, hold, account, settlement, actor, reason);
  });
}

/** A job's hold is settled only with its job (jobs/finish.ts finishJob); credits never expires it on its own. */
export class HoldOwnedByJob extends DomainError {
  constructor(holdId: string, jobId: string) {
    super("failed-precondition", `Hold ${holdId} belongs to job ${jobId}; the jobs module settles it.`, {
      reason: "hold-owned-by-job",
      hold_id: holdId,
      job_id: jobId,
    });
  }
}

/**
 * Expires a hold without a job whose `expires_at` has passed; a no-op if it
 * is settled or not yet due. A hold with a `job_id` is refused
 * (HoldOwnedByJob): its expiry fails the job, and the jobs module decides
 * that together with the settlement (jobs/expiry.ts).
 */
export async function releaseExpiredHold(
  db: Firestore,
  holdId: string,
  clock: Clock = systemClock,
): Promise<SettleResult> {
  return runCreditTransaction(db, async (tx) => {
    const hold = await readHold(tx, db, holdId);
    if (hold.status !== "open" || hold.expiresAt.getTime() > clock.now().getTime()) {
      return { settled: false, status: hold.status };
    }
    if (hold.jobId) throw new HoldOwnedByJob(hold.id, hold.jobId);
    const account = await readAccount(tx, db, hold.userId);
    await readHoldLots(tx, db, hold, account, clock);
    return settleHoldInTransaction(tx, db, hold, account, { kind: "expire" }, "system:ttlCleanup", "hold expired");
  });
}
