/**
 * Jobs end to end through the functions emulator, with the reference worker:
 * createJob → onDocumentCreated outbox → Redis stream / Pub/Sub → worker →
 * jobReport → capture or release, RTDB progress and a Mongo notification.
 * After every scenario, for every user involved: balance = Σ ledger, held =
 * Σ open holds, and every final job's hold settled exactly once.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { realtimeDb } from "../../functions/src/adapters/firebase";
import { pubsub } from "../../functions/src/adapters/pubsub";
import { RedisGateway } from "../../functions/src/adapters/redis";
import { notificationId } from "../../functions/src/notifications/notifications";
import { startWorker, type Worker } from "../../scripts/worker";
import { db, fund } from "../support/credits";
import { assertJobInvariants, jobDoc, postReport } from "../support/jobs";
import { closeTestMongo, testMongo } from "../support/mongo";
import { callFunction, control, deliver, env, fireSchedule, newUid, suite, waitFor } from "../support/suite";

interface Created {
  job_id: string;
  price: number;
  status: string;
  replayed: boolean;
}

const users: string[] = [];

async function newFundedUser(amount = 200): Promise<string> {
  const uid = newUid("jobs");
  users.push(uid);
  await fund(uid, amount);
  return uid;
}

function createJob(uid: string, type: string, input: Record<string, unknown>, key = `job-${randomUUID()}`) {
  return callFunction<Created>("createJob", { type, input, idempotency_key: key }, { uid });
}

async function created(uid: string, type: string, input: Record<string, unknown>): Promise<Created> {
  const answer = await createJob(uid, type, input);
  assert.ok(answer.result, JSON.stringify(answer.error));
  return answer.result;
}

function waitForStatus(jobId: string, status: string, timeoutMs = 30_000): Promise<Record<string, unknown>> {
  return waitFor(
    `job ${jobId} ${status}`,
    async () => {
      const data = await jobDoc(jobId);
      return data.status === status ? data : undefined;
    },
    { timeoutMs },
  );
}

function waitForDispatched(jobId: string): Promise<Record<string, unknown>> {
  return waitFor(`job ${jobId} dispatched`, async () => {
    const data = await jobDoc(jobId);
    return (data.dispatch as { state: string }).state === "dispatched" ? data : undefined;
  });
}

async function balanceOf(uid: string): Promise<{ balance: number; held: number }> {
  const user = (await db().collection("users").doc(uid).get()).data() ?? {};
  return { balance: Number(user.credits_balance), held: Number(user.credits_held) };
}

function redisGateway(): RedisGateway {
  return new RedisGateway({
    url: suite.redisUrl,
    commandTimeoutMs: 2000,
    connectWaitMs: 2000,
    breaker: { failureThreshold: 1000, cooldownMs: 10 },
  });
}

async function streamEntriesOf(redis: RedisGateway, stream: string, jobId: string): Promise<number> {
  const entries = (await redis.run((client) => client.xrange(stream, "-", "+"))) as Array<[string, string[]]>;
  return entries.filter(([, fields]) => fields[fields.indexOf("job_id") + 1] === jobId).length;
}

describe("e2e: jobs", function () {
  this.timeout(180_000);
  const redis = redisGateway();

  afterEach(async () => {
    for (const uid of users.splice(0)) await assertJobInvariants(uid);
  });

  after(async () => {
    await redis.close();
    await closeTestMongo();
  });

  describe("createJob", () => {
    it("when credits are insufficient, then failed-precondition and nothing is written", async () => {
      const uid = await newFundedUser(10);
      const answer = await createJob(uid, "podcast", { topic: "Tides", duration_min: 5 });
      assert.equal(answer.error?.status, "FAILED_PRECONDITION");
      assert.deepEqual(answer.error?.details, { reason: "insufficient-credits", available: 10, required: 25 });
      const jobs = await db().collection("jobs").where("user_id", "==", uid).get();
      assert.equal(jobs.size, 0);
      assert.deepEqual(await balanceOf(uid), { balance: 10, held: 0 });
    });

    it("when the input breaks the type's schema or has unknown fields, then invalid-argument names the field and nothing is written", async () => {
      const uid = await newFundedUser(100);
      const long = await createJob(uid, "podcast", { topic: "x".repeat(501), duration_min: 5 });
      assert.equal(long.error?.status, "INVALID_ARGUMENT");
      assert.ok(JSON.stringify(long.error?.details).includes("input.topic"));
      const sneaky = await createJob(uid, "podcast", { topic: "Tides", duration_min: 5, credits_balance: 1e6 });
      assert.equal(sneaky.error?.status, "INVALID_ARGUMENT");
      const unknownType = await createJob(uid, "movie", { topic: "Tides" });
      assert.equal(unknownType.error?.status, "INVALID_ARGUMENT");
      assert.equal((await db().collection("jobs").where("user_id", "==", uid).get()).size, 0);
      assert.deepEqual(await balanceOf(uid), { balance: 100, held: 0 });
    });

    it("when the same idempotency key is replayed, then one job and one hold; with other parameters, already-exists", async () => {
      const uid = await newFundedUser(100);
      const key = `job-${randomUUID()}`;
      const first = await createJob(uid, "report", { subject: "Q3", pages: 2 }, key);
      const again = await createJob(uid, "report", { subject: "Q3", pages: 2 }, key);
      assert.equal(again.result?.job_id, first.result?.job_id);
      assert.equal(again.result?.replayed, true);
      const other = await createJob(uid, "report", { subject: "Q3", pages: 3 }, key);
      assert.equal(other.error?.status, "ALREADY_EXISTS");
      assert.equal((await db().collection("jobs").where("user_id", "==", uid).get()).size, 1);
      assert.deepEqual(await balanceOf(uid), { balance: 100, held: 8 });
      // Leave nothing running for later tests: cancel it.
      assert.ok((await callFunction("cancelJob", { job_id: first.result!.job_id }, { uid })).result);
    });
  });

  describe("without a worker", () => {
    it("when the owner cancels a queued job, then its hold is released; a second cancel and a late report change nothing", async () => {
      const uid = await newFundedUser(100);
      const job = await created(uid, "podcast", { topic: "Cancelled show", duration_min: 4 });
      assert.deepEqual(await balanceOf(uid), { balance: 100, held: 20 });
      const stranger = await callFunction("cancelJob", { job_id: job.job_id }, { uid: newUid("mallory") });
      assert.equal(stranger.error?.status, "NOT_FOUND");
      const cancel = await callFunction<{ status: string; cancelled: boolean }>(
        "cancelJob",
        { job_id: job.job_id },
        { uid },
      );
      assert.deepEqual(cancel.result, { job_id: job.job_id, status: "cancelled", cancelled: true });
      const again = await callFunction<{ cancelled: boolean }>("cancelJob", { job_id: job.job_id }, { uid });
      assert.equal(again.result?.cancelled, false);
      const late = await postReport({
        kind: "succeeded",
        job_id: job.job_id,
        report_id: "final",
        cost: 5,
        outputs: {},
      });
      assert.equal(late.json.result?.applied, false);
      assert.equal(late.json.result?.final, true);
      assert.equal((await jobDoc(job.job_id)).status, "cancelled");
      assert.deepEqual(await balanceOf(uid), { balance: 100, held: 0 });
    });

    it("when a job passes its deadline, then the sweeper fails it and releases its hold", async () => {
      const uid = await newFundedUser(100);
      const job = await created(uid, "report", { subject: "Overdue", pages: 5 });
      // The emulator's clock cannot be moved; moving the deadline is the same to the sweeper.
      await db()
        .collection("jobs")
        .doc(job.job_id)
        .update({ deadline_at: new Date(Date.now() - 1000) });
      assert.equal((await fireSchedule(suite.functionsOrigin, "jobsSweeper")).status, 200);
      const data = await waitForStatus(job.job_id, "failed");
      assert.equal(data.error, "deadline exceeded");
      assert.deepEqual(await balanceOf(uid), { balance: 100, held: 0 });
      const progress = (await realtimeDb().ref(`job_progress/${job.job_id}`).once("value")).val() as {
        status: string;
        user_id: string;
      };
      assert.equal(progress.status, "failed");
      assert.equal(progress.user_id, uid);
    });

    it("when the created-event is delivered again, then the job is dispatched once (one stream entry, one attempt)", async () => {
      const uid = await newFundedUser(100);
      const job = await created(uid, "podcast", { topic: "Duplicates", duration_min: 2 });
      const data = await waitForDispatched(job.job_id);
      const event = createdEvent(job.job_id, data);
      for (let i = 0; i < 2; i++)
        assert.equal(
          (await deliver(suite.functionsOrigin, "jobDispatcher", { ...event, id: randomUUID() })).status,
          200,
        );
      assert.equal(await streamEntriesOf(redis, "jobs:podcast", job.job_id), 1);
      assert.equal(((await jobDoc(job.job_id)).dispatch as { attempts: number }).attempts, 1);
      await callFunction("cancelJob", { job_id: job.job_id }, { uid });
    });

    it("when reports come twice, out of order and after the end, then progress only moves forward and the capture happens once", async () => {
      const uid = await newFundedUser(100);
      const job = await created(uid, "podcast", { topic: "Out of order", duration_min: 4 });
      const progress = (reportId: string, pct: number) =>
        postReport({ kind: "progress", job_id: job.job_id, report_id: reportId, stage: `s${pct}`, pct });
      assert.equal((await progress("p1", 50)).json.result?.applied, true);
      assert.equal((await progress("p2", 30)).json.result?.applied, false);
      assert.equal((await progress("p1", 50)).json.result?.applied, false);
      let data = await jobDoc(job.job_id);
      assert.equal(data.status, "running");
      assert.deepEqual(data.progress, { stage: "s50", pct: 50 });
      const mirror = (await realtimeDb().ref(`job_progress/${job.job_id}`).once("value")).val() as {
        pct: number;
        user_id: string;
      };
      assert.equal(mirror.pct, 50);
      assert.equal(mirror.user_id, uid);
      const success = {
        kind: "succeeded",
        job_id: job.job_id,
        report_id: "final",
        cost: 12,
        outputs: { audio_url: "memory://x" },
      };
      const results = await Promise.all([
        postReport(success),
        postReport(success),
        postReport({ ...success, report_id: "final-2", cost: 3 }),
      ]);
      assert.equal(results.filter((result) => result.json.result?.applied).length, 1);
      assert.equal(
        (await postReport({ kind: "failed", job_id: job.job_id, report_id: "late", error: "boom" })).json.result
          ?.applied,
        false,
      );
      assert.equal((await progress("p9", 99)).json.result?.applied, false);
      data = await jobDoc(job.job_id);
      assert.equal(data.status, "succeeded");
      const cost = Number(data.cost);
      assert.ok(cost === 12 || cost === 3);
      assert.deepEqual(await balanceOf(uid), { balance: 100 - cost, held: 0 });
      const mongo = await testMongo();
      const notes = await mongo.collection("notifications").find({ userId: uid }).toArray();
      assert.equal(notes.length, 1, "one notification for one outcome, however many reports");
      assert.equal(notes[0]._id.toHexString(), notificationId(`job:${job.job_id}:succeeded`).toHexString());
    });

    it("when a worker reports a cost above the hold, then only the hold is captured", async () => {
      const uid = await newFundedUser(100);
      const job = await created(uid, "report", { subject: "Expensive", pages: 1 });
      const answer = await postReport({
        kind: "succeeded",
        job_id: job.job_id,
        report_id: "final",
        cost: 1000,
        outputs: {},
      });
      assert.equal(answer.json.result?.applied, true);
      const data = await jobDoc(job.job_id);
      assert.equal(data.cost, 4);
      assert.equal(data.cost_reported, 1000);
      assert.deepEqual(await balanceOf(uid), { balance: 96, held: 0 });
    });

    it("when a report lacks the worker key or is malformed, then it is refused and nothing changes", async () => {
      const uid = await newFundedUser(100);
      const job = await created(uid, "report", { subject: "Guarded", pages: 1 });
      const report = { kind: "succeeded", job_id: job.job_id, report_id: "final", cost: 4, outputs: {} };
      assert.equal((await postReport(report, "wrong-key")).status, 401);
      const bad = await postReport({ ...report, cost: -1 });
      assert.equal(bad.status, 400);
      assert.equal(bad.json.error?.status, "invalid-argument");
      assert.equal((await jobDoc(job.job_id)).status, "queued");
      await callFunction("cancelJob", { job_id: job.job_id }, { uid });
    });

    it("when workers report over the job-results topic, then the consumer applies the reports", async () => {
      const uid = await newFundedUser(100);
      const job = await created(uid, "report", { subject: "Via Pub/Sub", pages: 2 });
      await pubsub()
        .topic("job-results")
        .publishMessage({ json: { kind: "progress", job_id: job.job_id, report_id: "p1", stage: "outline", pct: 40 } });
      await waitFor(
        "progress via pubsub",
        async () => ((await jobDoc(job.job_id)).progress as { pct: number }).pct === 40,
      );
      await pubsub()
        .topic("job-results")
        .publishMessage({ json: { kind: "failed", job_id: job.job_id, report_id: "final", error: "model refused" } });
      await waitForStatus(job.job_id, "failed");
      assert.deepEqual(await balanceOf(uid), { balance: 100, held: 0 });
    });

    it("when a stream entry is never acknowledged, then after N deliveries it moves to the DLQ, the job fails and its hold is released", async () => {
      const uid = await newFundedUser(100);
      const job = await created(uid, "podcast", { topic: "Poison", duration_min: 3 });
      await waitForDispatched(job.job_id);
      // A consumer that takes every entry and crashes before acknowledging it.
      const data = await waitFor(
        "poison entry dead-lettered",
        async () => {
          await redis.run((client) =>
            client.xreadgroup("GROUP", "workers", "crashy", "COUNT", 100, "STREAMS", "jobs:podcast", ">"),
          );
          await fireSchedule(suite.functionsOrigin, "jobsSweeper");
          const current = await jobDoc(job.job_id);
          return current.status === "failed" ? current : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 500 },
      );
      assert.match(String(data.error), /dead-lettered/);
      const dlq = (await redis.run((client) => client.xrange("jobs:podcast:dlq", "-", "+"))) as Array<
        [string, string[]]
      >;
      const entry = dlq.find(([, fields]) => fields[fields.indexOf("job_id") + 1] === job.job_id);
      assert.ok(entry, "the entry is in jobs:podcast:dlq");
      assert.equal(entry[1][entry[1].indexOf("deliveries") + 1], "3");
      assert.deepEqual(await balanceOf(uid), { balance: 100, held: 0 });
    });
  });

  describe("with the reference worker", () => {
    let podcastWorker: Worker;
    let reportWorker: Worker;
    const failTopic = "please fail";

    before(async () => {
      const common = {
        functionsBaseUrl: suite.functionsBaseUrl,
        apiKey: env("WORKER_API_KEY"),
        redisUrl: suite.redisUrl,
        decide: (job: { input: Record<string, unknown> }) =>
          job.input.topic === failTopic
            ? ({ kind: "failed", error: "voice model unavailable" } as const)
            : ({ kind: "succeeded" } as const),
      };
      podcastWorker = await startWorker({ ...common, type: "podcast" });
      reportWorker = await startWorker({ ...common, type: "report" });
    });

    after(async () => {
      await control("redis/start");
      await podcastWorker?.stop();
      await reportWorker?.stop();
    });

    it("when a podcast job runs, then it goes queued → running → succeeded, captures the actual cost and notifies the user", async () => {
      const uid = await newFundedUser(100);
      const job = await created(uid, "podcast", { topic: "The history of tides", duration_min: 10 });
      assert.equal(job.price, 50);
      const seen = new Set<number>();
      const ref = realtimeDb().ref(`job_progress/${job.job_id}`);
      const listener = ref.on("value", (snapshot) => {
        const value = snapshot.val() as { pct?: number } | null;
        if (value?.pct !== undefined) seen.add(value.pct);
      });
      const data = await waitForStatus(job.job_id, "succeeded");
      ref.off("value", listener);
      assert.equal(data.cost, 40, "8 of 10 minutes at 5 credits");
      assert.deepEqual(data.progress, { stage: "done", pct: 100 });
      assert.equal((data.outputs as { audio_url: string }).audio_url, `memory://podcasts/${job.job_id}.mp3`);
      assert.deepEqual(await balanceOf(uid), { balance: 60, held: 0 });
      const mirror = await waitFor("mirror final", async () => {
        const value = (await ref.once("value")).val() as { status: string; pct: number } | null;
        return value?.status === "succeeded" ? value : undefined;
      });
      assert.equal(mirror.pct, 100);
      assert.ok([...seen].every((pct) => pct >= 0 && pct <= 100));
      const note = await waitFor("notification", async () =>
        (await testMongo())
          .collection("notifications")
          .findOne({ _id: notificationId(`job:${job.job_id}:succeeded`) })
          .then((doc) => doc ?? undefined),
      );
      assert.equal(note.userId, uid);
      assert.equal(note.type, "job_succeeded");
      // Dispatch asked the model router, which logged its decision for this job.
      const routing = data.routing as { provider: string; model: string } | null;
      assert.ok(routing?.provider && routing.model, `routing recorded on the job: ${JSON.stringify(routing)}`);
      const decisions = await db().collection("routing_decisions").where("job_id", "==", job.job_id).get();
      assert.equal(decisions.size, 1);
      assert.equal(decisions.docs[0].get("selected_provider"), routing.provider);
    });

    it("when the worker fails a job, then its hold is released in full", async () => {
      const uid = await newFundedUser(100);
      const job = await created(uid, "podcast", { topic: failTopic, duration_min: 6 });
      const data = await waitForStatus(job.job_id, "failed");
      assert.equal(data.error, "voice model unavailable");
      assert.deepEqual(await balanceOf(uid), { balance: 100, held: 0 });
    });

    it("when a report job is dispatched over Pub/Sub, then the worker completes it", async () => {
      const uid = await newFundedUser(100);
      const job = await created(uid, "report", { subject: "Quarterly numbers", pages: 3 });
      const data = await waitForStatus(job.job_id, "succeeded");
      assert.equal(data.cost, 12);
      assert.deepEqual(await balanceOf(uid), { balance: 88, held: 0 });
    });

    it("when Redis is stopped, then Pub/Sub jobs are unaffected and stream jobs wait in the outbox until the sweeper dispatches them", async () => {
      const uid = await newFundedUser(200);
      await control("redis/stop");
      try {
        const report = await created(uid, "report", { subject: "Redis-free", pages: 2 });
        const podcast = await created(uid, "podcast", { topic: "Waiting in the outbox", duration_min: 2 });
        await waitForStatus(report.job_id, "succeeded");
        const waiting = await waitFor("outbox records the failure", async () => {
          const data = await jobDoc(podcast.job_id);
          const dispatch = data.dispatch as { state: string; last_error: string | null };
          return dispatch.state === "pending" && dispatch.last_error ? data : undefined;
        });
        assert.equal(waiting.status, "queued");
        assert.match(String((waiting.dispatch as { last_error: string }).last_error), /redis/i);
      } finally {
        await control("redis/start");
      }
      const podcastJob = (
        await db().collection("jobs").where("user_id", "==", uid).where("type", "==", "podcast").get()
      ).docs[0];
      await waitFor(
        "the sweeper dispatches the waiting job and the worker completes it",
        async () => {
          await fireSchedule(suite.functionsOrigin, "jobsSweeper");
          return (await jobDoc(podcastJob.id)).status === "succeeded";
        },
        { timeoutMs: 60_000, intervalMs: 1000 },
      );
      assert.deepEqual(await balanceOf(uid), { balance: 200 - 8 - 10, held: 0 });
    });
  });
});

/** A Firestore `document.v1.created` CloudEvent for the job, as the emulator would deliver it. */
function createdEvent(jobId: string, data: Record<string, unknown>) {
  const project = suite.projectId;
  const now = new Date().toISOString();
  return {
    specversion: "1.0",
    id: randomUUID(),
    source: `//firestore.googleapis.com/projects/${project}/databases/(default)`,
    type: "google.cloud.firestore.document.v1.created",
    time: now,
    subject: `documents/jobs/${jobId}`,
    datacontenttype: "application/json",
    project,
    location: "us-central1",
    database: "(default)",
    namespace: "(default)",
    document: `jobs/${jobId}`,
    data: {
      value: {
        name: `projects/${project}/databases/(default)/documents/jobs/${jobId}`,
        fields: { user_id: { stringValue: String(data.user_id) }, status: { stringValue: "queued" } },
        createTime: now,
        updateTime: now,
      },
    },
  };
}
