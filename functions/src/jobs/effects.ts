/**
 * What follows a job's accepted change, outside its transaction: the RTDB
 * progress mirror and, for a final state, the user's notification. Both are
 * idempotent, so repeating them (a duplicate report, a retried delivery)
 * converges instead of duplicating.
 */
import { notify } from "../notifications/notifications";
import { logs } from "../shared/logs";
import { systemClock } from "../shared/time";
import { JOB_PROGRESS, TERMINAL, type Job, type JobDeps } from "./job";

/** Both effects of an accepted change; a duplicate report of a final job runs them again, so a crash after the transaction still converges. */
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
