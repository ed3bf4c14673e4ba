/**
 * The expiry of job holds, which the jobs module owns.
 *
 * ttlCleanup's `expired_holds` policy calls `expireHolds(...)` for every open
 * hold past `expires_at`. A hold without a job is expired by credits
 * (`releaseExpiredHold`); a job's hold is expired by failing its job through
 * `finishJob`, so the job's final state and the hold's settlement are one
 * transaction and a late `succeeded` report can no longer find the job open
 * with its hold gone. A hold whose job does not exist (never created with it,
 * or removed) is expired here too, so no hold outlives its expiry.
 */
import type { Firestore } from "firebase-admin/firestore";
import {
  holdRef,
  readAccount,
  readHold,
  readHoldLots,
  releaseExpiredHold,
  settleHoldInTransaction,
  runCreditTransaction,
  type SettleResult,
} from "../credits";
import type { ReleaseExpiredHold } from "../retention/policies";
import type { Clock } from "../shared/time";
import { finishJob } from "./finish";
import { jobRef, type JobDeps } from "./job";

export const EXPIRY_ACTOR = "system:ttlCleanup";

/** What expiring one hold did. */
export type HoldExpiry = "job-failed" | "orphan-expired" | "hold-expired" | "not-due";

/** The `release_hold` action of the retention table, with the jobs module's side effects (mirror, notification). */
export function expireHolds(sideEffects: Omit<JobDeps, "db" | "clock"> = {}): ReleaseExpiredHold {
  return (db, holdId, clock) => expireHold({ ...sideEffects, db, clock }, holdId);
}

/** Expires one hold if it is open and due: through its job when it has one. */
export async function expireHold(deps: JobDeps & { clock: Clock }, holdId: string): Promise<HoldExpiry> {
  const snapshot = await holdRef(deps.db, holdId).get();
  if (!snapshot.exists) return "not-due";
  const jobId = snapshot.get("job_id") as string | null | undefined;
  if (!jobId) return settledOrNot(await releaseExpiredHold(deps.db, holdId, deps.clock), "hold-expired");
  if (!(await jobRef(deps.db, jobId).get()).exists)
    return settledOrNot(await expireOrphanHold(deps.db, holdId, jobId, deps.clock), "orphan-expired");
  const now = deps.clock.now().getTime();
  const { changed } = await finishJob(
    deps,
    jobId,
    {
      status: "failed",
      error: "hold expired",
      settlement: "expire",
      actor: EXPIRY_ACTOR,
      reason: `job ${jobId}: hold expired`,
    },
    // Only this hold, only once it is due: a hold extended or settled since the policy read it is left alone.
    (_job, hold) => hold.id === holdId && hold.status === "open" && hold.expiresAt.getTime() <= now,
  );
  return changed ? "job-failed" : "not-due";
}

/** Expires a job hold whose job document does not exist; re-checks both inside the transaction. */
async function expireOrphanHold(db: Firestore, holdId: string, jobId: string, clock: Clock): Promise<SettleResult> {
  return runCreditTransaction(db, async (tx) => {
    const job = await tx.get(jobRef(db, jobId));
    const hold = await readHold(tx, db, holdId);
    if (job.exists || hold.status !== "open" || hold.expiresAt.getTime() > clock.now().getTime())
      return { settled: false, status: hold.status };
    const account = await readAccount(tx, db, hold.userId);
    await readHoldLots(tx, db, hold, account, clock);
    return settleHoldInTransaction(
      tx,
      db,
      hold,
      account,
      { kind: "expire" },
      EXPIRY_ACTOR,
      `hold expired; job ${jobId} does not exist`,
    );
  });
}

function settledOrNot(result: SettleResult, done: HoldExpiry): HoldExpiry {
  return result.settled ? done : "not-due";
}
