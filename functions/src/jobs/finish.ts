/**
 * `finishJob`: the one way a job reaches its final state.
 *
 * One transaction reads the job, its hold and the account, settles the hold
 * (capture or release) and writes the final state together, so a job's hold
 * is settled exactly once and a final state is never changed again. Side
 * effects that are not money (effects.ts) follow the transaction and are idempotent.
 */
import type { Transaction } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import {
  readAccount,
  readHold,
  readHoldLots,
  settleHoldInTransaction,
  runCreditTransaction,
  type Hold,
  type Settlement,
} from "../credits";
import { logs } from "../shared/logs";
import { afterChange } from "./effects";
import { readJob, TERMINAL, type Job, type JobDeps } from "./job";

export interface Outcome {
  status: "succeeded" | "failed" | "cancelled";
  /** Credits to capture (succeeded only); capped at the hold. */
  cost?: number;
  outputs?: Record<string, unknown>;
  error?: string;
  /** How a failure settles the hold: `release` (default), or `expire` when the hold's own expiry ends the job. */
  settlement?: "release" | "expire";
  actor: string;
  reason: string;
}

export interface FinishResult {
  /** False when nothing was written (already final, or the guard declined). */
  changed: boolean;
  /**
   * False when the job became final without its hold being settled here,
   * because something had settled it already: then the job is not
   * `succeeded` and nothing was charged, whatever was reported.
   */
  settled: boolean;
  job: Job;
}

/**
 * Moves a job to its final state and settles its hold, in one transaction:
 * the one place where a job's outcome and its hold's settlement are decided.
 *
 * `guard` runs after the reads and may throw (ownership) or return false (not
 * applicable, e.g. deadline not reached) to write nothing. `beforeWrite` adds
 * reads-then-writes of the caller (report dedupe) after all of this function's reads.
 *
 * A job is recorded `succeeded` only together with the capture of its cost.
 * Should its hold be settled already (data from before the jobs module owned
 * its holds' expiry, or a manual fix), the job still becomes final, as
 * `failed` and not charged, so the worker gets a final answer and no
 * `succeeded` job ever carries a cost that was not captured.
 */
export async function finishJob(
  deps: JobDeps,
  jobId: string,
  outcome: Outcome,
  guard?: (job: Job, hold: Hold) => boolean,
  beforeWrite?: (tx: Transaction) => Promise<boolean>,
): Promise<FinishResult> {
  const { db } = deps;
  const result = await runCreditTransaction(db, async (tx): Promise<FinishResult> => {
    const job = await readJob(tx, db, jobId);
    if (TERMINAL.has(job.status)) return { changed: false, settled: false, job };
    const hold = await readHold(tx, db, job.holdId);
    const account = await readAccount(tx, db, job.userId);
    await readHoldLots(tx, db, hold, account, deps.clock);
    if (guard && !guard(job, hold)) return { changed: false, settled: false, job };
    if (beforeWrite && !(await beforeWrite(tx))) return { changed: false, settled: false, job };
    const settledElsewhere = hold.status !== "open";
    const status = settledElsewhere && outcome.status === "succeeded" ? "failed" : outcome.status;
    const cost = status === "succeeded" ? Math.min(outcome.cost ?? 0, hold.amount) : 0;
    if (!settledElsewhere) {
      const settlement: Settlement =
        status === "succeeded" ? { kind: "capture", cost } : { kind: outcome.settlement ?? "release" };
      settleHoldInTransaction(tx, db, hold, account, settlement, outcome.actor, outcome.reason);
    }
    const reported = outcome.status === "succeeded" ? outcome.cost : undefined;
    const { FieldValue } = firestoreValues();
    const version = job.version + 1;
    const pct = status === "succeeded" ? 100 : job.pct;
    const stage = status === "succeeded" ? "done" : job.stage;
    tx.update(job.ref, {
      status,
      version,
      cost,
      ...(reported !== undefined && reported !== cost ? { cost_reported: reported } : {}),
      outputs: status === "succeeded" ? (outcome.outputs ?? null) : null,
      error: settledElsewhere ? `not charged: its hold was already ${hold.status}` : (outcome.error ?? null),
      "progress.pct": pct,
      "progress.stage": stage,
      ...(job.dispatch.state !== "dispatched" ? { "dispatch.state": "skipped" } : {}),
      finished_at: FieldValue.serverTimestamp(),
      updated_at: FieldValue.serverTimestamp(),
    });
    return { changed: true, settled: !settledElsewhere, job: { ...job, status, version, pct, stage } };
  });
  if (result.changed && !result.settled) logs.jobHoldSettledElsewhere(jobId, outcome.status, result.job.status);
  await afterChange(deps, result.job);
  return result;
}

/**
 * `finishJob` as the account closure asks for it (credits/closure.ts `failJob`): fail the job for a reason.
 * Without Mongo in `deps` no notification is sent, as for a deleted user.
 */
export function jobFailer(
  deps: JobDeps,
): (jobId: string, actor: string, reason: string) => Promise<{ changed: boolean }> {
  return (jobId, actor, reason) => finishJob(deps, jobId, { status: "failed", error: reason, actor, reason });
}
