/** The jobs sweeper's deadline rule with a fixed clock, against the Firestore emulator. */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createJob } from "../../functions/src/jobs/create";
import { sweepJobs } from "../../functions/src/jobs/sweep";
import { db, fund } from "../support/credits";
import { assertJobInvariants, jobDoc } from "../support/jobs";
import { newUid } from "../support/suite";

describe("integration: jobs sweeper deadlines", function () {
  this.timeout(30_000);

  it("when the clock is before a job's deadline, then it stays; once past, then it fails and its hold is released", async () => {
    const uid = newUid("sweep");
    await fund(uid, 100);
    const createdAt = new Date(Date.now() - 11 * 60_000);
    const job = await createJob({ db: db(), clock: { now: () => createdAt } }, uid, {
      type: "report",
      input: { subject: "Late", pages: 2 },
      idempotency_key: `sweep-${randomUUID()}`,
    });
    const deadline = new Date(job.deadline_at).getTime();
    const options = { visibilityMs: 60_000, maxDeliveries: 5 };
    await sweepJobs({ db: db(), clock: { now: () => new Date(deadline - 1000) } }, options);
    assert.equal((await jobDoc(job.job_id)).status, "queued");
    const result = await sweepJobs({ db: db(), clock: { now: () => new Date(deadline + 1000) } }, options);
    assert.ok(result.expired >= 1);
    const data = await jobDoc(job.job_id);
    assert.equal(data.status, "failed");
    assert.equal(data.error, "deadline exceeded");
    await assertJobInvariants(uid);
  });
});
