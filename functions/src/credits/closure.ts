/**
 * What deleting `users/{uid}` means for money: the account is closed, not erased.
 *
 * The ledger is kept (it is the record of what happened). The user's open jobs
 * fail through the jobs module's `finishJob`, which releases each job's hold in
 * the job's own transaction (invariant 10); holds without a job are released
 * here. Every settlement is a ledger entry on the closed account, which does
 * not bring the user document back (see ledger.ts); a later grant re-opens the
 * account and its versions and balance continue. Running this again (a
 * redelivered trigger) finds everything settled and writes nothing. Only jobs
 * and holds created before the deletion are settled: a late or redelivered
 * event must not fail the work of an account re-opened since.
 */
import type { Database } from "firebase-admin/database";
import type { Firestore } from "firebase-admin/firestore";
import { finishJob, JOBS } from "../jobs/model";
import { HOLDS, settleHold } from "./holds";

export interface ClosureDeps {
  db: Firestore;
  /** For the jobs' live progress mirror; optional. */
  rtdb?: Database;
}

export interface ClosureResult {
  jobsFailed: number;
  holdsReleased: number;
  /** Items that could not be settled, with the reason; the others were (invariant 14). */
  errors: string[];
}

const ACTOR = "system:onUserDeleted";
const REASON = "account deleted";

export async function closeAccount(deps: ClosureDeps, uid: string, deletedAt: Date): Promise<ClosureResult> {
  const result: ClosureResult = { jobsFailed: 0, holdsReleased: 0, errors: [] };
  const open = await deps.db.collection(JOBS).where("user_id", "==", uid).where("status", "in", ["queued", "running"]).get();
  for (const doc of open.docs) {
    if (!createdBy(doc.get("created_at"), deletedAt)) continue;
    try {
      // No Mongo in the deps: a deleted user gets no notification.
      const { changed } = await finishJob({ db: deps.db, rtdb: deps.rtdb }, doc.id, { status: "failed", error: REASON, actor: ACTOR, reason: REASON });
      if (changed) result.jobsFailed += 1;
    } catch (error) {
      result.errors.push(`job ${doc.id}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  // Holds of a job are the job's to settle (done above); only holds without a job are released here.
  const holds = await deps.db.collection(HOLDS).where("user_id", "==", uid).where("status", "==", "open").get();
  for (const doc of holds.docs) {
    if (doc.get("job_id") !== null && doc.get("job_id") !== undefined) continue;
    if (!createdBy(doc.get("created_at"), deletedAt)) continue;
    try {
      const { settled } = await settleHold(deps.db, doc.id, { kind: "release" }, ACTOR, REASON);
      if (settled) result.holdsReleased += 1;
    } catch (error) {
      result.errors.push(`hold ${doc.id}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  return result;
}

/** Whether a document's `created_at` (a Firestore Timestamp) is not after `deletedAt`. */
function createdBy(createdAt: unknown, deletedAt: Date): boolean {
  const at = createdAt as { toMillis?: () => number } | null | undefined;
  return typeof at?.toMillis === "function" && at.toMillis() <= deletedAt.getTime();
}
