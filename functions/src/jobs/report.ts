/**
 * Worker reports (Pub/Sub `job-results` or the jobReport endpoint): progress
 * and outcomes.
 *
 * Progress only moves forward (a higher pct; the first report moves queued →
 * running). Success captures the actual cost (capped at the hold; the rest is
 * released); failure releases. A final job changes no more, so duplicate and
 * late reports are no-ops; each report id is also claimed once
 * (shared/dedupe.ts) in the transaction that applies it. Every report, applied
 * or not, re-applies the idempotent side effects (the RTDB mirror, a final
 * state's notification), so a redelivery after a failed mirror write converges.
 * A report delivered over Pub/Sub that can never apply is dead-lettered with its
 * reason and acked.
 */
import type { Firestore, Transaction } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import { TRANSACTION_ATTEMPTS } from "../credits";
import { recordDeadLetter } from "../shared/dead-letters";
import { claimInTransaction } from "../shared/dedupe";
import { afterChange } from "./effects";
import { finishJob } from "./finish";
import { readJob, TERMINAL, type Job, type JobDeps, type JobStatus } from "./job";
import { logs } from "../shared/logs";
import type { JobReport } from "./schemas";

export const REPORT_CONSUMER = "job-report";

/** One Pub/Sub delivery of a report. */
export interface ReportDelivery {
  topic: string;
  messageId: string;
  json: unknown;
}

/**
 * Records a report that can never apply (malformed, or refused by the use case) in
 * `dead_letters/job-report:{message_id}` with the reason, so the consumer can ack it instead
 * of having it redelivered forever. Keyed by the message id: a redelivery writes the same entry.
 */
export async function deadLetterReport(db: Firestore, delivery: ReportDelivery, reason: string): Promise<void> {
  const jobId = (delivery.json as { job_id?: unknown } | null | undefined)?.job_id;
  await recordDeadLetter(db, {
    consumer: REPORT_CONSUMER,
    topic: delivery.topic,
    messageId: delivery.messageId,
    error: reason,
    attempts: 1,
    transient: false,
    subject: { job_id: typeof jobId === "string" ? jobId.slice(0, 200) : null },
  });
  logs.jobReportRejected(delivery.messageId, reason);
}

export interface ReportResult {
  job_id: string;
  applied: boolean;
  status: JobStatus;
  /** True when the job is final: a worker stops working on it. */
  final: boolean;
}

export async function applyReport(deps: JobDeps, report: JobReport, actor: string): Promise<ReportResult> {
  const dedupeId = `${report.job_id}:${report.report_id}`;
  const claim = (tx: Transaction) => claimInTransaction(tx, deps.db, REPORT_CONSUMER, dedupeId, { clock: deps.clock });
  if (report.kind === "progress") return applyProgress(deps, report, claim);
  const { changed, job } = await finishJob(
    deps,
    report.job_id,
    report.kind === "succeeded"
      ? {
          status: "succeeded",
          cost: report.cost,
          outputs: report.outputs,
          actor,
          reason: `job ${report.job_id} succeeded`,
        }
      : { status: "failed", error: report.error, actor, reason: `job ${report.job_id} failed` },
    undefined,
    claim,
  );
  // finishJob repeats the idempotent side effects for a duplicate too, so a crash after the commit converges.
  // Applied means the reported outcome is what the job recorded (a success whose hold was gone is not).
  return {
    job_id: job.id,
    applied: changed && job.status === report.kind,
    status: job.status,
    final: TERMINAL.has(job.status),
  };
}

async function applyProgress(
  deps: JobDeps,
  report: Extract<JobReport, { kind: "progress" }>,
  claim: (tx: Transaction) => Promise<boolean>,
): Promise<ReportResult> {
  const { db } = deps;
  const { FieldValue } = firestoreValues();
  const result = await db.runTransaction(
    async (tx): Promise<{ applied: boolean; job: Job }> => {
      const job = await readJob(tx, db, report.job_id);
      if (TERMINAL.has(job.status)) return { applied: false, job };
      const forward = job.status === "queued" || report.pct > job.pct;
      if (!forward || !(await claim(tx))) return { applied: false, job };
      const pct = Math.max(job.pct, report.pct);
      const version = job.version + 1;
      tx.update(job.ref, {
        status: "running",
        "progress.stage": report.stage,
        "progress.pct": pct,
        version,
        ...(job.status === "queued" ? { started_at: FieldValue.serverTimestamp() } : {}),
        updated_at: FieldValue.serverTimestamp(),
      });
      return { applied: true, job: { ...job, status: "running", stage: report.stage, pct, version } };
    },
    { maxAttempts: TRANSACTION_ATTEMPTS },
  );
  // Also for a duplicate or stale report: the mirror write of the delivery that committed may have failed,
  // and a redelivery is the only thing that comes back. The mirror is version-guarded, so this converges.
  await afterChange(deps, result.job);
  return {
    job_id: result.job.id,
    applied: result.applied,
    status: result.job.status,
    final: TERMINAL.has(result.job.status),
  };
}
