/**
 * jobsSweeper's work, every minute:
 *  1. jobs past their deadline fail and their holds are released;
 *  2. the outbox: jobs whose dispatch is pending (Redis was down) or whose
 *     dispatcher's lease ran out are dispatched again;
 *  3. stream entries idle past the visibility timeout are re-claimed and
 *     queued again, or after N deliveries moved to the DLQ, failing the job.
 * Each part runs even if another fails (Redis down must not stop deadlines).
 */
import { finishJob, JOBS, TERMINAL, toJob, type JobDeps } from "./model";
import { dispatchJob, type DispatchDeps } from "./dispatch";
import { streamTypes } from "./registry";
import { reclaimIdle } from "./streams";
import { systemClock } from "../shared/time";

export interface SweepOptions {
  visibilityMs: number;
  maxDeliveries: number;
  batch?: number;
}

export interface SweepResult {
  expired: number;
  redispatched: number;
  requeued: number;
  deadLettered: number;
  errors: string[];
}

export async function sweepJobs(deps: JobDeps & DispatchDeps, options: SweepOptions): Promise<SweepResult> {
  const result: SweepResult = { expired: 0, redispatched: 0, requeued: 0, deadLettered: 0, errors: [] };
  const clock = deps.clock ?? systemClock;
  const batch = options.batch ?? 200;
  const now = clock.now();

  await part(result, async () => {
    const due = await deps.db.collection(JOBS).where("status", "in", ["queued", "running"]).where("deadline_at", "<=", now).limit(batch).get();
    for (const doc of due.docs) {
      const { changed } = await finishJob(
        deps,
        doc.id,
        { status: "failed", error: "deadline exceeded", actor: "system:jobsSweeper", reason: `job ${doc.id} passed its deadline` },
        (job) => job.deadlineAt.getTime() <= now.getTime(),
      );
      if (changed) result.expired += 1;
    }
  });

  await part(result, async () => {
    const waiting = await deps.db.collection(JOBS).where("dispatch.state", "in", ["pending", "dispatching"]).limit(batch).get();
    for (const doc of waiting.docs) {
      const job = toJob(doc.ref, doc.data());
      if (TERMINAL.has(job.status)) {
        // A dispatcher that failed after the job became final put it back to pending; nothing is left to send.
        await doc.ref.update({ "dispatch.state": "skipped" });
        continue;
      }
      if (job.status !== "queued") continue;
      const { outcome } = await dispatchJob(deps, job.id);
      if (outcome === "dispatched") result.redispatched += 1;
    }
  });

  for (const { stream } of streamTypes()) {
    await part(result, async () => {
      if (!deps.redis) return;
      const reclaimed = await reclaimIdle(deps.redis, stream, options.visibilityMs, options.maxDeliveries, async (jobId) => {
        const snapshot = await deps.db.collection(JOBS).doc(jobId).get();
        // An entry for an unknown job is poison too: it goes around until the DLQ takes it.
        return snapshot.exists && TERMINAL.has(snapshot.get("status"));
      });
      result.requeued += reclaimed.requeued.length;
      for (const dead of reclaimed.deadLettered) {
        result.deadLettered += 1;
        if (!dead.jobId) continue;
        await finishJob(deps, dead.jobId, {
          status: "failed",
          error: `no worker completed it after ${options.maxDeliveries} deliveries (dead-lettered)`,
          actor: "system:jobsSweeper",
          reason: `job ${dead.jobId} dead-lettered`,
        }).catch((error: unknown) => result.errors.push(String(error)));
      }
    });
  }
  return result;
}

async function part(result: SweepResult, work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (error) {
    result.errors.push(error instanceof Error ? error.message : String(error));
  }
}
