/**
 * A job's final state and its hold's settlement are one fact (invariant 10),
 * against the Firestore emulator: the bad orders of issue 10 hole 1, driven
 * through the real retention runner, holds and report use cases.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { settleHold } from "../../functions/src/credits/holds";
import { createJob } from "../../functions/src/jobs/create";
import { expireHolds } from "../../functions/src/jobs/expiry";
import { applyReport } from "../../functions/src/jobs/report";
import { retentionPolicies } from "../../functions/src/retention/policies";
import { runTtlCleanup } from "../../functions/src/retention/runner";
import { db, fund, ledgerOf } from "../support/credits";
import { assertJobInvariants, jobDoc } from "../support/jobs";
import { fixedClock } from "../support/stores";
import { newUid } from "../support/suite";

const MINUTE = 60_000;

/** A podcast job created `agoMs` ago (its hold expires 30 + 15 minutes after that). */
async function jobCreatedAgo(uid: string, agoMs: number, durationMin = 4) {
  const createdAt = new Date(Date.now() - agoMs);
  return createJob({ db: db(), clock: { now: () => createdAt } }, uid, {
    type: "podcast",
    input: { topic: "Late work", duration_min: durationMin },
    idempotency_key: `late-${randomUUID()}`,
  });
}

/** The retention run of ttlCleanup's `expired_holds` policy, wired as in production. */
async function runHoldRetention(clock = fixedClock()) {
  const policy = retentionPolicies().find((candidate) => candidate.name === "expired_holds")!;
  return runTtlCleanup({
    db: db(),
    clock,
    policies: [policy],
    releaseExpiredHold: expireHolds(),
    budgetMs: 60_000,
    pageSize: 500,
    stateId: newUid("ttl-state"),
  });
}

/** Invariant 10 for one user: every succeeded job has exactly one capture, equal to its recorded cost. */
async function assertNoWorkDeliveredFree(uid: string): Promise<void> {
  const [jobs, ledger] = await Promise.all([db().collection("jobs").where("user_id", "==", uid).get(), ledgerOf(uid)]);
  for (const job of jobs.docs) {
    if (job.get("status") !== "succeeded") continue;
    const captures = ledger.filter((entry) => entry.type === "capture" && entry.hold_id === job.get("hold_id"));
    assert.equal(captures.length, 1, `succeeded job ${job.id}: exactly one capture`);
    assert.equal(
      -Number(captures[0].amount),
      Number(job.get("cost")),
      `succeeded job ${job.id}: capture = recorded cost`,
    );
  }
}

describe("integration: jobs own their holds (final state and settlement are one fact)", function () {
  this.timeout(60_000);

  it("when retention finds a job's hold past expires_at and the success report comes late, then the job fails with its hold expired, nothing is charged and the report gets a final answer", async () => {
    const uid = newUid("late");
    await fund(uid, 100);
    const job = await jobCreatedAgo(uid, 60 * MINUTE);
    const retention = await runHoldRetention();
    assert.equal(retention.policies[0].error, undefined);

    const failed = await jobDoc(job.job_id);
    assert.equal(failed.status, "failed", "retention fails the job rather than settling its hold behind its back");
    assert.equal(failed.error, "hold expired");

    const answer = await applyReport(
      { db: db() },
      { kind: "succeeded", job_id: job.job_id, report_id: "final", cost: 16, outputs: { audio_url: "memory://late" } },
      "worker:test",
    );
    assert.deepEqual(answer, { job_id: job.job_id, applied: false, status: "failed", final: true });

    const data = await jobDoc(job.job_id);
    assert.equal(data.status, "failed");
    assert.equal(data.cost, 0);
    assert.deepEqual(
      (await ledgerOf(uid)).map((entry) => entry.type),
      ["grant", "hold", "expire"],
    );
    assert.equal((await db().collection("credit_holds").doc(job.hold_id).get()).get("status"), "expired");
    await assertNoWorkDeliveredFree(uid);
    await assertJobInvariants(uid);
  });

  it("when a job's hold was settled by something else before its success report, then the job is not recorded succeeded with an uncaptured cost", async () => {
    const uid = newUid("late");
    await fund(uid, 100);
    const job = await jobCreatedAgo(uid, MINUTE);
    // A path outside the jobs module settles the hold (old data, a manual fix): the job must not claim a capture.
    await settleHold(db(), job.hold_id, { kind: "release" }, "test:operator", "manual release");

    const answer = await applyReport(
      { db: db() },
      { kind: "succeeded", job_id: job.job_id, report_id: "final", cost: 16, outputs: {} },
      "worker:test",
    );
    assert.equal(answer.final, true, "the worker is told to stop");
    assert.equal(answer.status, "failed");
    const again = await applyReport(
      { db: db() },
      { kind: "succeeded", job_id: job.job_id, report_id: "final", cost: 16, outputs: {} },
      "worker:test",
    );
    assert.deepEqual(again, { ...answer, applied: false }, "a redelivery gets the same final answer");

    const data = await jobDoc(job.job_id);
    assert.equal(data.status, "failed");
    assert.equal(data.cost, 0);
    assert.equal(data.cost_reported, 16);
    assert.match(String(data.error), /not charged/);
    assert.deepEqual(
      (await ledgerOf(uid)).map((entry) => entry.type),
      ["grant", "hold", "release"],
    );
    await assertNoWorkDeliveredFree(uid);
    await assertJobInvariants(uid);
  });

  it("when retention runs before a job's hold is due, then the job and its hold are left alone, and the success captures its cost", async () => {
    const uid = newUid("late");
    await fund(uid, 100);
    const job = await jobCreatedAgo(uid, MINUTE);
    await runHoldRetention();
    assert.equal((await jobDoc(job.job_id)).status, "queued");
    const answer = await applyReport(
      { db: db() },
      { kind: "succeeded", job_id: job.job_id, report_id: "final", cost: 16, outputs: {} },
      "worker:test",
    );
    assert.equal(answer.applied, true);
    assert.equal((await jobDoc(job.job_id)).cost, 16);
    await assertNoWorkDeliveredFree(uid);
    await assertJobInvariants(uid);
  });

  it("when a job's hold is past expires_at but its job document is gone, then retention still expires the hold (nothing outlives its expiry)", async () => {
    const uid = newUid("orphan");
    await fund(uid, 100);
    const job = await jobCreatedAgo(uid, 60 * MINUTE);
    await db().collection("jobs").doc(job.job_id).delete();
    await runHoldRetention();
    assert.equal((await db().collection("credit_holds").doc(job.hold_id).get()).get("status"), "expired");
    assert.deepEqual(
      (await ledgerOf(uid)).map((entry) => entry.type),
      ["grant", "hold", "expire"],
    );
    await assertJobInvariants(uid);
  });
});
