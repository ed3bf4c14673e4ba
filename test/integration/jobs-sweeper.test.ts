/**
 * The jobs sweeper against the Firestore emulator and the harness's real
 * redis-server: deadlines with a fixed clock, per-job isolation and
 * quarantine, reconciliation of dispatched jobs after Redis lost its data,
 * trimmed streams and DLQs, and worker heartbeats.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { RedisGateway } from "../../functions/src/adapters/redis";
import { createJob } from "../../functions/src/jobs/create";
import { dispatchJob } from "../../functions/src/jobs/dispatch";
import { applyReport } from "../../functions/src/jobs/report";
import { addToStream, GROUP, heartbeat, parseFields, reclaimIdle } from "../../functions/src/jobs/streams";
import { sweepJobs } from "../../functions/src/jobs/sweep";
import { db, fund } from "../support/credits";
import { assertJobInvariants, jobDoc } from "../support/jobs";
import { newUid, suite, waitFor } from "../support/suite";

const MINUTE = 60_000;
const options = { visibilityMs: 60_000, maxDeliveries: 5 };

function redisGateway(): RedisGateway {
  return new RedisGateway({
    url: suite.redisUrl,
    commandTimeoutMs: 2000,
    connectWaitMs: 2000,
    breaker: { failureThreshold: 1000, cooldownMs: 10 },
  });
}

async function jobCreatedAgo(uid: string, agoMs: number, type: "podcast" | "report" = "report") {
  const createdAt = new Date(Date.now() - agoMs);
  return createJob({ db: db(), clock: { now: () => createdAt } }, uid, {
    type,
    input: type === "report" ? { subject: "Late", pages: 2 } : { topic: "Lost in Redis", duration_min: 2 },
    idempotency_key: `sweep-${randomUUID()}`,
  });
}

describe("integration: jobs sweeper", function () {
  this.timeout(60_000);
  const redis = redisGateway();

  after(() => redis.close());

  it("when the clock is before a job's deadline, then it stays; once past, then it fails and its hold is released", async () => {
    const uid = newUid("sweep");
    await fund(uid, 100);
    const job = await jobCreatedAgo(uid, 11 * MINUTE);
    const deadline = new Date(job.deadline_at).getTime();
    await sweepJobs({ db: db(), clock: { now: () => new Date(deadline - 1000) } }, options);
    assert.equal((await jobDoc(job.job_id)).status, "queued");
    const result = await sweepJobs({ db: db(), clock: { now: () => new Date(deadline + 1000) } }, options);
    assert.ok(result.expired >= 1);
    const data = await jobDoc(job.job_id);
    assert.equal(data.status, "failed");
    assert.equal(data.error, "deadline exceeded");
    await assertJobInvariants(uid);
  });

  it("when overdue jobs include one whose hold is missing and one whose owner's account cannot take the release, then the others still fail on the same run and the bad ones are quarantined, not retried every run", async () => {
    const good = newUid("sweep-good");
    const bad = newUid("sweep-bad");
    await fund(good, 100);
    await fund(bad, 100);
    // The poisoned jobs come first in deadline order.
    const missingHold = await jobCreatedAgo(bad, 40 * MINUTE);
    const broken = newUid("sweep-broken");
    await fund(broken, 100);
    const ownerBroken = await jobCreatedAgo(broken, 39 * MINUTE);
    const fine = await jobCreatedAgo(good, 38 * MINUTE);
    await db().collection("credit_holds").doc(missingHold.hold_id).delete();
    // The owner's document no longer records the hold: releasing it would take credits_held below zero.
    await db().collection("users").doc(broken).update({ credits_held: 0 });

    const now = new Date();
    const first = await sweepJobs({ db: db(), clock: { now: () => now } }, options);
    assert.ok(first.expired >= 1, JSON.stringify(first));
    assert.ok(first.quarantined >= 2, JSON.stringify(first));
    const done = await jobDoc(fine.job_id);
    assert.equal(done.status, "failed");
    assert.equal(done.error, "deadline exceeded");
    await assertJobInvariants(good);

    const quarantineOf = async (jobId: string) => {
      const data = await jobDoc(jobId);
      assert.equal(data.status, "queued", `${jobId} is not finished without its money`);
      return data.quarantine as { reason: string; error: string; attempts: number; retry_at: { toDate(): Date } };
    };
    const noHold = await quarantineOf(missingHold.job_id);
    assert.equal(noHold.reason, "not-found");
    assert.match(noHold.error, /Hold .* was not found/);
    assert.equal(noHold.attempts, 1);
    assert.ok(noHold.retry_at.toDate().getTime() > now.getTime());
    const noOwner = await quarantineOf(ownerBroken.job_id);
    assert.equal(noOwner.reason, "ledger-conflict");
    assert.equal(noOwner.attempts, 1);

    // The next run (same minute) leaves them alone; once their retry time has come they are tried again.
    await sweepJobs({ db: db(), clock: { now: () => now } }, options);
    assert.equal((await quarantineOf(missingHold.job_id)).attempts, 1);
    const later = new Date(noHold.retry_at.toDate().getTime() + 1000);
    await sweepJobs({ db: db(), clock: { now: () => later } }, options);
    const retried = await quarantineOf(missingHold.job_id);
    assert.equal(retried.attempts, 2);
    assert.ok(retried.retry_at.toDate().getTime() - later.getTime() > MINUTE, "the backoff grows");
  });

  it("when Redis loses a dispatched job's stream entry (flush), then the sweeper sends it again and a worker completes it", async () => {
    const uid = newUid("sweep-lost");
    await fund(uid, 100);
    const job = await jobCreatedAgo(uid, 0, "podcast");
    assert.equal((await dispatchJob({ db: db(), redis }, job.job_id)).outcome, "dispatched");
    const lost = ((await jobDoc(job.job_id)).dispatch as { message_id: string }).message_id;
    await redis.run((client) => client.flushall());

    const result = await sweepJobs({ db: db(), redis }, options);
    assert.ok(result.resent >= 1, JSON.stringify(result));
    const dispatch = (await jobDoc(job.job_id)).dispatch as { state: string; message_id: string; attempts: number };
    assert.equal(dispatch.state, "dispatched");
    assert.notEqual(dispatch.message_id, lost);
    assert.equal(dispatch.attempts, 2);

    // A second run finds the new entry and sends nothing more.
    await sweepJobs({ db: db(), redis }, options);
    assert.equal(((await jobDoc(job.job_id)).dispatch as { message_id: string }).message_id, dispatch.message_id);

    // A consumer of the group gets the job again and finishes it.
    const consumer = `test-${randomUUID().slice(0, 8)}`;
    const entry = await waitFor("the re-sent entry", async () => {
      const reply = (await redis.run((client) =>
        client.xreadgroup("GROUP", GROUP, consumer, "COUNT", 100, "STREAMS", "jobs:podcast", ">"),
      )) as Array<[string, Array<[string, string[]]>]> | null;
      return (reply?.[0]?.[1] ?? []).find(([, fields]) => parseFields(fields).job_id === job.job_id);
    });
    const answer = await applyReport(
      { db: db() },
      { kind: "succeeded", job_id: job.job_id, report_id: "final", cost: 8, outputs: {} },
      "worker:test",
    );
    assert.equal(answer.applied, true);
    await redis.run((client) => client.xack("jobs:podcast", GROUP, entry[0]));
    assert.equal((await jobDoc(job.job_id)).status, "succeeded");
    await assertJobInvariants(uid);
  });

  it("when many entries are added to a stream and dead-lettered, then the stream and its DLQ stay near their cap", async () => {
    const stream = `jobs:trim-${randomUUID().slice(0, 8)}`;
    const cap = 10;
    const count = 350;
    for (let index = 0; index < count; index++) {
      await addToStream(
        redis,
        stream,
        { job_id: `j${index}`, type: "trim", user_id: "u", input: "{}", attempt: 1 },
        cap,
      );
    }
    const length = async (key: string) => redis.run((client) => client.xlen(key));
    // MAXLEN ~ trims whole radix-tree nodes (100 entries each by default), never below the cap.
    const streamLength = await length(stream);
    assert.ok(streamLength >= cap && streamLength <= cap + 100, `stream length ${streamLength}`);

    const dlqStream = `jobs:dlq-${randomUUID().slice(0, 8)}`;
    for (let index = 0; index < count; index++) {
      await redis.run((client) => client.xadd(dlqStream, "*", "job_id", `d${index}`, "attempt", "1"));
    }
    await redis.run(async (client) => {
      await client.xgroup("CREATE", dlqStream, GROUP, "0", "MKSTREAM").catch(() => undefined);
      return client.xreadgroup("GROUP", GROUP, "crashy", "COUNT", count, "STREAMS", dlqStream, ">");
    });
    let deadLettered = 0;
    await waitFor("every entry dead-lettered", async () => {
      const reclaimed = await reclaimIdle(redis, dlqStream, 0, 1, async () => false, cap);
      deadLettered += reclaimed.deadLettered.length;
      return deadLettered >= count;
    });
    const dlqLength = await length(`${dlqStream}:dlq`);
    assert.ok(dlqLength >= cap && dlqLength <= cap + 100, `dlq length ${dlqLength}`);
  });

  it("when a worker heartbeats the entry it works on, then the sweeper does not re-send it past the visibility timeout; an entry without heartbeat is re-sent", async () => {
    const stream = `jobs:hb-${randomUUID().slice(0, 8)}`;
    const beating = await addToStream(redis, stream, {
      job_id: "beating",
      type: "hb",
      user_id: "u",
      input: "{}",
      attempt: 1,
    });
    const silent = await addToStream(redis, stream, {
      job_id: "silent",
      type: "hb",
      user_id: "u",
      input: "{}",
      attempt: 1,
    });
    await redis.run((client) => client.xreadgroup("GROUP", GROUP, "long-worker", "COUNT", 10, "STREAMS", stream, ">"));
    const readAt = Date.now();
    const visibilityMs = 300;
    const requeued = new Set<string>();
    await waitFor(
      "several visibility timeouts pass",
      async () => {
        assert.equal(await heartbeat(redis, stream, "long-worker", beating), true);
        const reclaimed = await reclaimIdle(redis, stream, visibilityMs, 5, async () => false);
        for (const moved of reclaimed.requeued) requeued.add(moved.entryId);
        return Date.now() - readAt > 5 * visibilityMs && requeued.has(silent);
      },
      { timeoutMs: 30_000, intervalMs: 50 },
    );
    assert.equal(requeued.has(beating), false, "the heartbeated entry stays with its worker");
    const pending = (await redis.run((client) => client.xpending(stream, GROUP, "-", "+", 10))) as Array<
      [string, string, number, number]
    >;
    const mine = pending.find(([id]) => id === beating);
    assert.ok(mine, "still pending");
    assert.equal(mine[1], "long-worker");
    assert.equal(mine[3], 1, "heartbeats do not count as deliveries");
  });
});
