/**
 * jobsSweeper's work, every minute:
 *  1. jobs past their deadline fail and their holds are released;
 *  2. the outbox: jobs whose dispatch is pending (Redis was down) or whose
 *     dispatcher's lease ran out are dispatched again;
 *  3. stream entries idle past the visibility timeout are re-claimed and
 *     queued again, or after N deliveries moved to the DLQ, failing the job;
 *  4. reconciliation: a dispatched stream job whose entry Redis no longer has
 *     (flush, restart without persistence, failover, trim) is sent again.
 * Each part runs even if another fails (Redis down must not stop deadlines),
 * and inside a part each job is isolated: one job that cannot be finished is
 * quarantined with its reason (`quarantine` on the job, logged as
 * `job_quarantined`) and retried with a growing backoff, while the others proceed.
 */
import type { QueryDocumentSnapshot, Query } from "firebase-admin/firestore";
import { DomainError } from "../shared/errors";
import { logs } from "../shared/logs";
import { systemClock } from "../shared/time";
import { dispatchJob, type DispatchDeps } from "./dispatch";
import { finishJob } from "./finish";
import { JOBS, readJob, TERMINAL, toJob, type Job, type JobDeps, type JobStatus } from "./job";
import { streamTypes } from "./registry";
import { missingEntries, reclaimIdle } from "./streams";

export interface SweepOptions {
  visibilityMs: number;
  maxDeliveries: number;
  /** Jobs handled per part and run (default 200). */
  batch?: number;
}

export interface SweepResult {
  expired: number;
  redispatched: number;
  requeued: number;
  deadLettered: number;
  /** Dispatched stream jobs whose entry was gone from Redis and that were sent again. */
  resent: number;
  /** Jobs set aside this run because finishing them failed. */
  quarantined: number;
  errors: string[];
}

/** First retry of a quarantined job after this long, doubling up to QUARANTINE_MAX_BACKOFF_MS. */
export const QUARANTINE_BACKOFF_MS = 60_000;
export const QUARANTINE_MAX_BACKOFF_MS = 3_600_000;
/** Pages of overdue jobs one run reads at most while skipping quarantined ones. */
const MAX_PAGES = 5;

export async function sweepJobs(deps: JobDeps & DispatchDeps, options: SweepOptions): Promise<SweepResult> {
  const result: SweepResult = {
    expired: 0,
    redispatched: 0,
    requeued: 0,
    deadLettered: 0,
    resent: 0,
    quarantined: 0,
    errors: [],
  };
  const clock = deps.clock ?? systemClock;
  const batch = options.batch ?? 200;
  const now = clock.now();

  await part(result, async () => {
    const overdue = deps.db
      .collection(JOBS)
      .where("status", "in", ["queued", "running"])
      .where("deadline_at", "<=", now)
      .orderBy("deadline_at");
    for (const job of await unquarantined(overdue, now, batch)) {
      await isolated(result, job, now, async () => {
        const { changed } = await finishJob(
          deps,
          job.id,
          {
            status: "failed",
            error: "deadline exceeded",
            actor: "system:jobsSweeper",
            reason: `job ${job.id} passed its deadline`,
          },
          (current) => current.deadlineAt.getTime() <= now.getTime(),
        );
        if (changed) result.expired += 1;
      });
    }
  });

  await part(result, async () => {
    const waiting = await deps.db
      .collection(JOBS)
      .where("dispatch.state", "in", ["pending", "dispatching"])
      .limit(batch)
      .get();
    for (const doc of waiting.docs) {
      const job = toJob(doc.ref, doc.data());
      await part(result, async () => {
        if (TERMINAL.has(job.status)) {
          // Data from before finishJob marked the outbox of a final job skipped: nothing is left to send.
          await doc.ref.update({ "dispatch.state": "skipped" });
          return;
        }
        if (job.status !== "queued") return;
        const { outcome } = await dispatchJob(deps, job.id);
        if (outcome === "dispatched") result.redispatched += 1;
      });
    }
  });

  for (const { stream } of streamTypes()) {
    await part(result, () => reclaim(deps, options, stream, result));
    await part(result, () => reconcile(deps, stream, batch, result));
  }
  return result;
}

/** Part 3 for one stream: idle entries are queued again or dead-lettered (failing their jobs). */
async function reclaim(
  deps: JobDeps & DispatchDeps,
  options: SweepOptions,
  stream: string,
  result: SweepResult,
): Promise<void> {
  if (!deps.redis) return;
  const reclaimed = await reclaimIdle(
    deps.redis,
    stream,
    options.visibilityMs,
    options.maxDeliveries,
    async (jobId) => {
      const snapshot = await deps.db.collection(JOBS).doc(jobId).get();
      // An entry for an unknown job is poison too: it goes around until the DLQ takes it.
      return snapshot.exists && TERMINAL.has(snapshot.get("status") as JobStatus);
    },
    deps.streamMaxLength,
  );
  result.requeued += reclaimed.requeued.length;
  for (const moved of reclaimed.requeued) {
    // The job follows its entry, so reconciliation looks for the entry that exists now.
    await part(result, () => recordEntry(deps, moved.jobId, moved.entryId, moved.newEntryId));
  }
  for (const dead of reclaimed.deadLettered) {
    result.deadLettered += 1;
    if (!dead.jobId) continue;
    await part(result, async () => {
      await finishJob(deps, dead.jobId!, {
        status: "failed",
        error: `no worker completed it after ${options.maxDeliveries} deliveries (dead-lettered)`,
        actor: "system:jobsSweeper",
        reason: `job ${dead.jobId} dead-lettered`,
      });
    });
  }
}

/**
 * Part 4 for one stream: every open job recorded as dispatched to it must
 * still have its entry; one whose entry is gone is leased and sent again.
 * A Redis error is never taken for a missing entry (the part just fails).
 */
async function reconcile(
  deps: JobDeps & DispatchDeps,
  stream: string,
  batch: number,
  result: SweepResult,
): Promise<void> {
  if (!deps.redis) return;
  const dispatched = deps.db
    .collection(JOBS)
    .where("dispatch.destination", "==", stream)
    .where("dispatch.state", "==", "dispatched")
    .where("status", "in", ["queued", "running"])
    .orderBy("__name__");
  let after: QueryDocumentSnapshot | undefined;
  for (let page = 0; page < MAX_PAGES; page++) {
    const snapshot = await (after ? dispatched.startAfter(after) : dispatched).limit(batch).get();
    const jobs = snapshot.docs.map((doc) => toJob(doc.ref, doc.data())).filter((job) => job.dispatch.messageId);
    const missing = await missingEntries(
      deps.redis,
      stream,
      jobs.map((job) => job.dispatch.messageId!),
    );
    for (const job of jobs) {
      const entryId = job.dispatch.messageId!;
      if (!missing.has(entryId)) continue;
      await part(result, async () => {
        logs.jobStreamEntryLost(job.id, stream, entryId);
        const { outcome } = await dispatchJob(deps, job.id, { lostEntry: entryId });
        if (outcome === "dispatched") result.resent += 1;
      });
    }
    if (snapshot.size < batch) return;
    after = snapshot.docs[snapshot.docs.length - 1];
  }
}

/** Points the job at its re-queued entry, unless it already moved on. */
async function recordEntry(deps: JobDeps, jobId: string, oldEntryId: string, newEntryId: string): Promise<void> {
  if (!newEntryId) return;
  await deps.db.runTransaction(async (tx) => {
    const job = await readJob(tx, deps.db, jobId);
    if (job.dispatch.messageId === oldEntryId) tx.update(job.ref, { "dispatch.message_id": newEntryId });
  });
}

/** Up to `limit` jobs of `query` that are not quarantined (or whose retry time has come), reading a few pages at most. */
async function unquarantined(query: Query, now: Date, limit: number): Promise<Job[]> {
  const jobs: Job[] = [];
  let after: QueryDocumentSnapshot | undefined;
  for (let page = 0; page < MAX_PAGES && jobs.length < limit; page++) {
    const snapshot = await (after ? query.startAfter(after) : query).limit(limit).get();
    for (const doc of snapshot.docs) {
      const job = toJob(doc.ref, doc.data());
      const retryAt = job.quarantine?.retryAt;
      if (!retryAt || retryAt.getTime() <= now.getTime()) jobs.push(job);
      if (jobs.length === limit) break;
    }
    if (snapshot.size < limit) break;
    after = snapshot.docs[snapshot.docs.length - 1];
  }
  return jobs;
}

/**
 * Runs one job's work; if it throws, the job is quarantined: `quarantine`
 * records the reason, the error, how often it failed and when to try again
 * (1 min, doubling to 1 h), so a poisoned job neither stops the others nor
 * is retried on every run; `job_quarantined` is logged at error level for alerting.
 */
async function isolated(result: SweepResult, job: Job, now: Date, work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const reason =
      error instanceof DomainError
        ? typeof error.details?.reason === "string"
          ? error.details.reason
          : error.code
        : "unexpected-error";
    const attempts = (job.quarantine?.attempts ?? 0) + 1;
    const backoff = Math.min(QUARANTINE_MAX_BACKOFF_MS, QUARANTINE_BACKOFF_MS * 2 ** (attempts - 1));
    result.quarantined += 1;
    result.errors.push(`job ${job.id}: ${message}`);
    logs.jobQuarantined(job.id, reason, message.slice(0, 300), attempts);
    await part(result, async () => {
      await job.ref.update({
        quarantine: {
          reason,
          error: message.slice(0, 300),
          attempts,
          at: now,
          retry_at: new Date(now.getTime() + backoff),
        },
      });
    });
  }
}

async function part(result: SweepResult, work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (error) {
    result.errors.push(error instanceof Error ? error.message : String(error));
  }
}
