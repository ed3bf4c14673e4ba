/**
 * The jobs outbox and progress mirror against the Firestore emulator, the
 * RTDB substitute and the harness's redis-server: only the lease holder ends a
 * dispatch, and a redelivered report converges the RTDB mirror whose write
 * failed after the report's commit.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { Database } from "firebase-admin/database";
import { realtimeDb } from "../../functions/src/adapters/firebase";
import { RedisGateway } from "../../functions/src/adapters/redis";
import { createJob } from "../../functions/src/jobs/create";
import { dispatchJob } from "../../functions/src/jobs/dispatch";
import { applyReport } from "../../functions/src/jobs/report";
import { db, fund } from "../support/credits";
import { assertJobInvariants, jobDoc } from "../support/jobs";
import { newUid, suite } from "../support/suite";

function gateway(url: string): RedisGateway {
  return new RedisGateway({
    url,
    commandTimeoutMs: 1000,
    connectWaitMs: 1000,
    breaker: { failureThreshold: 1000, cooldownMs: 10 },
  });
}

async function newJob(uid: string, type: "podcast" | "report") {
  return createJob({ db: db() }, uid, {
    type,
    input: type === "podcast" ? { topic: "Outbox", duration_min: 2 } : { subject: "Mirror", pages: 2 },
    idempotency_key: `outbox-${randomUUID()}`,
  });
}

/** The real RTDB whose next write fails, as a dropped connection after the Firestore commit would. */
function failingOnce(real: Database): Database {
  let failed = false;
  return new Proxy(real, {
    get(target, property, receiver) {
      if (property === "ref" && !failed) {
        return () => {
          failed = true;
          throw new Error("rtdb write failed");
        };
      }
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

describe("integration: jobs outbox and progress mirror", function () {
  this.timeout(60_000);
  const redis = gateway(suite.redisUrl);
  // Nothing listens on port 1: sends through it fail at once, like Redis down.
  const deadRedis = gateway("redis://127.0.0.1:1");

  after(async () => {
    await redis.close();
    await deadRedis.close();
  });

  it("when a slow dispatcher's lease was taken over and its send then fails, then it does not revert the new holder's dispatched record", async () => {
    const uid = newUid("outbox");
    await fund(uid, 100);
    const job = await newJob(uid, "podcast");
    const start = Date.now();
    let entered!: () => void;
    let proceed!: () => void;
    const inRouter = new Promise<void>((resolve) => (entered = resolve));
    const gate = new Promise<void>((resolve) => (proceed = resolve));
    // Dispatcher A leases, then stalls (here: in routing) past its lease.
    const slow = dispatchJob(
      {
        db: db(),
        redis: deadRedis,
        clock: { now: () => new Date(start) },
        leaseMs: 1000,
        router: {
          route: async () => {
            entered();
            await gate;
            return undefined;
          },
        },
      },
      job.job_id,
    );
    await inRouter;
    // Dispatcher B (the sweeper) finds the lease expired, takes it and sends.
    const second = await dispatchJob(
      { db: db(), redis, clock: { now: () => new Date(start + 5000) }, leaseMs: 1000 },
      job.job_id,
    );
    assert.equal(second.outcome, "dispatched");
    const sent = (await jobDoc(job.job_id)).dispatch as { message_id: string };
    proceed();
    const first = await slow;
    assert.equal(first.outcome, "pending", "A's own send failed");

    const dispatch = (await jobDoc(job.job_id)).dispatch as {
      state: string;
      message_id: string;
      attempts: number;
      lease_owner: string | null;
    };
    assert.equal(dispatch.state, "dispatched", "A did not put B's dispatched job back to pending");
    assert.equal(dispatch.message_id, sent.message_id);
    assert.equal(dispatch.attempts, 2);
    assert.equal(dispatch.lease_owner, null);
    // Nothing left for a sweeper to send twice: a third dispatcher finds it dispatched.
    assert.equal(
      (await dispatchJob({ db: db(), redis, clock: { now: () => new Date(start + 10_000) } }, job.job_id)).outcome,
      "skipped",
    );
    await assertJobInvariants(uid);
  });

  it("when a worker reads the job the moment its entry is in the stream, then the routing it was sent with is already on the job", async () => {
    const uid = newUid("outbox");
    await fund(uid, 100);
    const job = await newJob(uid, "podcast");
    let seenByWorker: unknown = "never read";
    // The real gateway, whose stream add is followed at once by a worker's read
    // of the job, before the dispatcher can record anything after the send.
    const racing = new Proxy(redis, {
      get(target, property, receiver) {
        if (property !== "run") return Reflect.get(target, property, receiver) as unknown;
        return async <T>(command: Parameters<RedisGateway["run"]>[0]): Promise<T> => {
          const id = (await target.run(command)) as T;
          seenByWorker = (await jobDoc(job.job_id)).routing;
          return id;
        };
      },
    });
    const routing = { provider: "p1", model: "m1" };
    const outcome = await dispatchJob({ db: db(), redis: racing, router: { route: async () => routing } }, job.job_id);
    assert.equal(outcome.outcome, "dispatched");
    assert.deepEqual(seenByWorker, routing, "the worker saw the job without its routing");
    assert.deepEqual((await jobDoc(job.job_id)).routing, routing);
  });

  it("when a worker's reports run while the dispatcher records dispatched, then the job succeeds, its hold is captured and its dispatch is settled once", async () => {
    for (let round = 0; round < 4; round++) {
      const uid = newUid("outbox-race");
      await fund(uid, 100);
      const job = await newJob(uid, "podcast");
      let reports: Promise<unknown> | undefined;
      // The real gateway; the moment the entry is in the stream, a fast worker reports progress and success,
      // concurrently with the dispatcher's write after the send (each round starts them a little later).
      const racing = new Proxy(redis, {
        get(target, property, receiver) {
          if (property !== "run") return Reflect.get(target, property, receiver) as unknown;
          return async <T>(command: Parameters<RedisGateway["run"]>[0]): Promise<T> => {
            const id = (await target.run(command)) as T;
            const deps = { db: db(), rtdb: realtimeDb() };
            reports = (async () => {
              for (let tick = 0; tick < round; tick++) await new Promise((resolve) => setImmediate(resolve));
              const base = { job_id: job.job_id };
              await applyReport(
                deps,
                { ...base, kind: "progress", report_id: "p1", stage: "draft", pct: 50 },
                "worker:t",
              );
              await applyReport(
                deps,
                { ...base, kind: "succeeded", report_id: "s1", cost: 7, outputs: {} },
                "worker:t",
              );
            })();
            return id;
          };
        },
      });
      const outcome = await dispatchJob({ db: db(), redis: racing }, job.job_id);
      await reports;
      const final = await jobDoc(job.job_id);
      assert.equal(final.status, "succeeded", `round ${round}`);
      // The entry was sent. Whichever wrote first keeps the record: the dispatcher (dispatched), or the finish,
      // which marks a job it ends before its dispatch is recorded as skipped. Never left leased.
      assert.equal(outcome.outcome, "dispatched", `round ${round}`);
      const state = (final.dispatch as { state: string }).state;
      assert.ok(state === "dispatched" || state === "skipped", `round ${round}: ${state}`);
      await assertJobInvariants(uid);
    }
  });

  it("when a report's mirror write fails after its commit, then its redelivery (deduplicated) still converges the RTDB job_progress mirror", async () => {
    const uid = newUid("mirror");
    await fund(uid, 100);
    const job = await newJob(uid, "report");
    const report = { kind: "progress" as const, job_id: job.job_id, report_id: "p1", stage: "outline", pct: 40 };
    await assert.rejects(
      applyReport({ db: db(), rtdb: failingOnce(realtimeDb()) }, report, "worker:test"),
      /rtdb write failed/,
    );
    const committed = await jobDoc(job.job_id);
    assert.equal(committed.status, "running", "the report committed before the mirror failed");
    const mirror = realtimeDb().ref(`job_progress/${job.job_id}`);
    assert.equal((await mirror.once("value")).val(), null);

    const again = await applyReport({ db: db(), rtdb: realtimeDb() }, report, "worker:test");
    assert.equal(again.applied, false, "the redelivery is deduplicated");
    const value = (await mirror.once("value")).val() as {
      status: string;
      pct: number;
      stage: string;
      version: number;
      user_id: string;
    } | null;
    assert.ok(value, "the mirror exists after the redelivery");
    assert.equal(value.status, "running");
    assert.equal(value.pct, 40);
    assert.equal(value.stage, "outline");
    assert.equal(value.version, committed.version);
    assert.equal(value.user_id, uid);
    await assertJobInvariants(uid);
  });
});
