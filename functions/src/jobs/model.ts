/**
 * The job document and its state machine: queued → running → succeeded | failed | cancelled.
 *
 * Every final transition goes through `finishJob`, one transaction that reads
 * the job, its hold and the account, settles the hold (capture or release) and
 * writes the final state together, so a job's hold is settled exactly once and
 * a final state is never changed again. Side effects that are not money (the
 * RTDB mirror, the notification) follow the transaction and are idempotent.
 */
import type { Database } from "firebase-admin/database";
import type { Db } from "mongodb";
import type { DocumentReference, Firestore, Transaction } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import type { RedisGateway } from "../adapters/redis";
import { readHold, settleHoldInTransaction, TRANSACTION_ATTEMPTS, type Hold, type Settlement } from "../credits/holds";
import { readAccount } from "../credits/ledger";
import { notify } from "../notifications/notify";
import { NotFound } from "../shared/errors";
import { logs } from "../shared/logs";
import type { Clock } from "../shared/time";
import { systemClock } from "../shared/time";

export const JOBS = "jobs";
export const JOB_PROGRESS = "job_progress";

export type JobStatus = "queued" | "running" | "succeeded" | "failed" | "cancelled";
/** `skipped`: the job became final before it was dispatched (cancelled, expired); the outbox stops retrying it. */
export type DispatchState = "pending" | "dispatching" | "dispatched" | "skipped";

export const TERMINAL: ReadonlySet<JobStatus> = new Set(["succeeded", "failed", "cancelled"]);

export interface Job {
  id: string;
  ref: DocumentReference;
  userId: string;
  type: string;
  input: Record<string, unknown>;
  status: JobStatus;
  price: number;
  holdId: string;
  deadlineAt: Date;
  stage: string | null;
  pct: number;
  /** Grows with every accepted change; the RTDB mirror applies only newer versions. */
  version: number;
  dispatch: {
    state: DispatchState;
    attempts: number;
    leaseUntil: Date | null;
    /** Id of the dispatcher holding the lease (only it may end it). */
    leaseOwner: string | null;
    /** Stream entry id or Pub/Sub message id of the last send. */
    messageId: string | null;
  };
  /** Set when the sweeper could not finish the job (see sweep.ts); it is retried after `retryAt`. */
  quarantine: { reason: string; attempts: number; retryAt: Date | null } | null;
}

/** Dependencies of the job use cases; Mongo and Redis are optional (notifications and live delivery are best effort). */
export interface JobDeps {
  db: Firestore;
  rtdb?: Database;
  mongo?: () => Promise<Db>;
  redis?: RedisGateway;
  clock?: Clock;
}

export function jobRef(db: Firestore, jobId: string): DocumentReference {
  return db.collection(JOBS).doc(jobId);
}

export function holdIdOf(jobId: string): string {
  return `job_${jobId}`;
}

export function toJob(ref: DocumentReference, data: Record<string, unknown>): Job {
  const dispatch = (data.dispatch ?? {}) as Record<string, unknown>;
  const progress = (data.progress ?? {}) as Record<string, unknown>;
  return {
    id: ref.id,
    ref,
    userId: String(data.user_id),
    type: String(data.type),
    input: (data.input ?? {}) as Record<string, unknown>,
    status: data.status as JobStatus,
    price: Number(data.price),
    holdId: String(data.hold_id),
    deadlineAt: toDate(data.deadline_at) ?? new Date(0),
    stage: (progress.stage as string | null | undefined) ?? null,
    pct: Number(progress.pct ?? 0),
    version: Number(data.version ?? 0),
    dispatch: {
      state: (dispatch.state as DispatchState | undefined) ?? "pending",
      attempts: Number(dispatch.attempts ?? 0),
      leaseUntil: toDate(dispatch.lease_until),
      leaseOwner: (dispatch.lease_owner as string | null | undefined) ?? null,
      messageId: (dispatch.message_id as string | null | undefined) ?? null,
    },
    quarantine: quarantineOf(data.quarantine),
  };
}

function quarantineOf(value: unknown): Job["quarantine"] {
  if (!value || typeof value !== "object") return null;
  const record = value as Record<string, unknown>;
  return { reason: String(record.reason ?? "unknown"), attempts: Number(record.attempts ?? 1), retryAt: toDate(record.retry_at) };
}

export async function readJob(tx: Transaction, db: Firestore, jobId: string): Promise<Job> {
  const ref = jobRef(db, jobId);
  const snapshot = await tx.get(ref);
  if (!snapshot.exists) throw new NotFound(`Job ${jobId}`);
  return toJob(ref, snapshot.data() ?? {});
}

export function toDate(value: unknown): Date | null {
  if (value instanceof Date) return value;
  if (value && typeof (value as { toDate?: unknown }).toDate === "function") return (value as { toDate(): Date }).toDate();
  return null;
}

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
  const result = await db.runTransaction(
    async (tx): Promise<FinishResult> => {
      const job = await readJob(tx, db, jobId);
      if (TERMINAL.has(job.status)) return { changed: false, settled: false, job };
      const hold = await readHold(tx, db, job.holdId);
      const account = await readAccount(tx, db, job.userId);
      if (guard && !guard(job, hold)) return { changed: false, settled: false, job };
      if (beforeWrite && !(await beforeWrite(tx))) return { changed: false, settled: false, job };
      const settledElsewhere = hold.status !== "open";
      const status = settledElsewhere && outcome.status === "succeeded" ? "failed" : outcome.status;
      const cost = status === "succeeded" ? Math.min(outcome.cost ?? 0, hold.amount) : 0;
      if (!settledElsewhere) {
        const settlement: Settlement = status === "succeeded" ? { kind: "capture", cost } : { kind: outcome.settlement ?? "release" };
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
        outputs: status === "succeeded" ? outcome.outputs ?? null : null,
        error: settledElsewhere ? `not charged: its hold was already ${hold.status}` : outcome.error ?? null,
        "progress.pct": pct,
        "progress.stage": stage,
        ...(job.dispatch.state !== "dispatched" ? { "dispatch.state": "skipped" } : {}),
        finished_at: FieldValue.serverTimestamp(),
        updated_at: FieldValue.serverTimestamp(),
      });
      return { changed: true, settled: !settledElsewhere, job: { ...job, status, version, pct, stage } };
    },
    { maxAttempts: TRANSACTION_ATTEMPTS },
  );
  if (result.changed && !result.settled) logs.jobHoldSettledElsewhere(jobId, outcome.status, result.job.status);
  await afterChange(deps, result.job);
  return result;
}

/**
 * What follows an accepted change (and is repeated harmlessly for a duplicate
 * report of a final job, so a crash after the transaction still converges):
 * the RTDB mirror and, for a final state, the user's notification.
 */
export async function afterChange(deps: JobDeps, job: Job): Promise<void> {
  await mirrorProgress(deps, job);
  if (TERMINAL.has(job.status)) await notifyOutcome(deps, job);
}

/** Writes `job_progress/{jobId}` unless the mirror already holds this or a newer version. */
export async function mirrorProgress(deps: JobDeps, job: Job): Promise<void> {
  if (!deps.rtdb) return;
  const clock = deps.clock ?? systemClock;
  const value = {
    user_id: job.userId,
    type: job.type,
    status: job.status,
    stage: job.stage,
    pct: job.pct,
    version: job.version,
    updated_at: clock.now().getTime(),
  };
  await deps.rtdb.ref(`${JOB_PROGRESS}/${job.id}`).transaction((current: { version?: number } | null) => {
    if (current && Number(current.version ?? 0) >= job.version) return undefined;
    return value;
  });
}

const MESSAGES: Record<string, (job: Job) => string> = {
  succeeded: (job) => `Your ${job.type} is ready.`,
  failed: (job) => `Your ${job.type} could not be completed; your credits were released.`,
  cancelled: (job) => `Your ${job.type} was cancelled; your credits were released.`,
};

async function notifyOutcome(deps: JobDeps, job: Job): Promise<void> {
  if (!deps.mongo) return;
  try {
    const mongo = await deps.mongo();
    await notify(
      { mongo, redis: deps.redis, clock: deps.clock },
      {
        userId: job.userId,
        type: `job_${job.status}`,
        toastMessage: (MESSAGES[job.status] ?? MESSAGES.failed)(job),
        urgency: job.status === "failed" ? "high" : "normal",
        persistent: job.status === "succeeded",
        dedupeKey: `job:${job.id}:${job.status}`,
        messageId: job.id,
      },
    );
  } catch (error) {
    // The job's state and money are final already; a missing toast must not fail the report.
    // A duplicate report or a retried delivery repeats this (the notification's id makes it once).
    logs.jobNotifyFailed(job.id, error instanceof Error ? error.message : String(error));
  }
}
