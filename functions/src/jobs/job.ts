/**
 * The job entity and its states: queued → running → succeeded | failed | cancelled.
 *
 * A job only moves forward: progress while queued or running, then one final
 * state that never changes again. Every final transition goes through
 * `finishJob` (finish.ts), which settles the job's hold in the same
 * transaction; its side effects (effects.ts) follow.
 */
import type { Database } from "firebase-admin/database";
import type { Db } from "mongodb";
import type { DocumentReference, DocumentSnapshot, Firestore, Transaction } from "firebase-admin/firestore";
import type { RedisGateway } from "../adapters/redis";
import { NotFound } from "../shared/errors";
import type { Clock } from "../shared/time";

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
  return {
    reason: typeof record.reason === "string" ? record.reason : "unknown",
    attempts: Number(record.attempts ?? 1),
    retryAt: toDate(record.retry_at),
  };
}

export async function readJob(tx: Transaction, db: Firestore, jobId: string): Promise<Job> {
  const ref = jobRef(db, jobId);
  return jobOf(ref, await tx.get(ref));
}

/** The job a read of `ref` found; NotFound when there is none. */
export function jobOf(ref: DocumentReference, snapshot: DocumentSnapshot): Job {
  if (!snapshot.exists) throw new NotFound(`Job ${ref.id}`);
  return toJob(ref, snapshot.data() ?? {});
}

export function toDate(value: unknown): Date | null {
  if (value instanceof Date) return value;
  if (value && typeof (value as { toDate?: unknown }).toDate === "function")
    return (value as { toDate(): Date }).toDate();
  return null;
}
