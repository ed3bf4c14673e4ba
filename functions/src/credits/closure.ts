/**
 * What deleting `users/{uid}` means for money: the account is closed, not erased.
 *
 * The ledger is kept (it is the record of what happened). The user's open jobs
 * fail through `deps.failJob` (the jobs module's `finishJob`, wired in by
 * functions.ts), which releases each job's hold in the job's own transaction
 * (invariant 10): credits decide nothing about jobs. Holds without a job are
 * released here. Every settlement is a ledger entry on the closed account, which does
 * not bring the user document back (see ledger.ts); a later grant re-opens the
 * account and its versions and balance continue. Running this again (a
 * redelivered trigger) finds everything settled and writes nothing. Only work
 * placed before the deletion (by ledger version) is settled: a late or
 * redelivered event must not fail the work of an account re-opened since.
 */
import type { Firestore } from "firebase-admin/firestore";
import { HOLDS, settleHold } from "./holds";

export interface ClosureDeps {
  db: Firestore;
  /** Fails a job and settles its hold in the job's transaction; `changed` is false when it was already final. */
  failJob: (jobId: string, actor: string, reason: string) => Promise<{ changed: boolean }>;
}

export interface ClosureResult {
  jobsFailed: number;
  holdsReleased: number;
  /** Items that could not be settled, with the reason; the others were (invariant 14). */
  errors: string[];
}

const ACTOR = "system:onUserDeleted";
const REASON = "account deleted";

/**
 * Settles the work the deleted account had open. `closedAtVersion` is the deleted user document's
 * `ledger_version`: a hold placed at or before it belongs to the closed account; a later one belongs
 * to an account re-opened since (a late or redelivered event must leave it alone). Versions, not
 * clocks, decide: an event's time and a document's server timestamp need not be comparable to the
 * millisecond.
 */
export async function closeAccount(deps: ClosureDeps, uid: string, closedAtVersion: number): Promise<ClosureResult> {
  const result: ClosureResult = { jobsFailed: 0, holdsReleased: 0, errors: [] };
  const holds = await deps.db.collection(HOLDS).where("user_id", "==", uid).where("status", "==", "open").get();
  for (const doc of holds.docs) {
    const placedAt = versionOf(doc.get("placed_by"));
    if (placedAt === null || placedAt > closedAtVersion) continue;
    const jobId = doc.get("job_id") as string | null | undefined;
    try {
      if (jobId) {
        // A job's hold is the job's to settle: the jobs module fails it and releases the hold in one transaction.
        const { changed } = await deps.failJob(jobId, ACTOR, REASON);
        if (changed) result.jobsFailed += 1;
      } else {
        const { settled } = await settleHold(deps.db, doc.id, { kind: "release" }, ACTOR, REASON);
        if (settled) result.holdsReleased += 1;
      }
    } catch (error) {
      result.errors.push(
        `${jobId ? `job ${jobId}` : `hold ${doc.id}`}: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }
  return result;
}

/** The ledger version in an entry id `{uid}_v{n}` (a hold's `placed_by`), or null. */
function versionOf(entryId: unknown): number | null {
  const match = typeof entryId === "string" ? /_v(\d+)$/.exec(entryId) : null;
  return match ? Number(match[1]) : null;
}
