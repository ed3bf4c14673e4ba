/** cancelJob: the owner ends a job that is not final; its hold is released in the same transaction. */
import { DomainError, NotFound } from "../shared/errors";
import { finishJob } from "./finish";
import type { JobDeps, JobStatus } from "./job";

export async function cancelJob(
  deps: JobDeps,
  uid: string,
  jobId: string,
): Promise<{ job_id: string; status: JobStatus; cancelled: boolean }> {
  const { changed, job } = await finishJob(
    deps,
    jobId,
    { status: "cancelled", error: "cancelled by the user", actor: `user:${uid}`, reason: `job ${jobId} cancelled` },
    (current) => {
      // Someone else's job is reported as missing, so ids cannot be probed.
      if (current.userId !== uid) throw new NotFound(`Job ${jobId}`);
      return true;
    },
  );
  if (job.userId !== uid) throw new NotFound(`Job ${jobId}`);
  if (!changed && job.status !== "cancelled") {
    throw new DomainError("failed-precondition", `The job is already ${job.status}.`, {
      reason: "job-final",
      status: job.status,
    });
  }
  return { job_id: jobId, status: job.status, cancelled: changed };
}
