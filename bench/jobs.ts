/**
 * Jobs: createJob against the floor of a bare Firestore transaction (read one
 * document, write one) measured in the same run, and the time from queued to
 * succeeded with a no-op reference worker (outbox trigger → Redis stream →
 * worker → jobReport → capture), seen through a Firestore listener.
 */
import { randomUUID } from "node:crypto";
import { firestore } from "../functions/src/adapters/firebase";
import { grantCredits } from "../functions/src/credits/operations";
import { createJob } from "../functions/src/jobs/create";
import { startWorker } from "../scripts/worker";
import { callFunction, env, suite } from "../test/support/suite";
import { median, percentile, type Row } from "./stats";

async function timed(run: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await run();
  return performance.now() - start;
}

export async function jobsBench(samples = 30): Promise<Row[]> {
  const db = firestore();
  const uid = `bench-jobs-${randomUUID().slice(0, 8)}`;
  await grantCredits({ db }, "bench", {
    user_id: uid,
    amount: 1_000_000,
    type: "grant",
    reason: "bench",
    idempotency_key: `bench-${randomUUID()}`,
  });
  const input = { topic: "Benchmarks", duration_min: 1 };
  // The createJob samples use the Pub/Sub type, which nobody consumes during the bench, so the no-op worker's stream starts empty.
  const report = { subject: "Benchmarks", pages: 1 };

  const floor: number[] = [];
  const useCase: number[] = [];
  const callable: number[] = [];
  const callableFloor: number[] = [];
  for (let i = 0; i < samples; i++) {
    // Interleaved so machine noise hits every series alike.
    floor.push(
      await timed(() =>
        db.runTransaction(async (tx) => {
          const ref = db.collection("bench_floor").doc(uid);
          const snapshot = await tx.get(ref);
          tx.set(ref, { n: Number(snapshot.get("n") ?? 0) + 1 });
        }),
      ),
    );
    useCase.push(
      await timed(() =>
        createJob({ db }, uid, { type: "report", input: report, idempotency_key: `bench-${randomUUID()}` }),
      ),
    );
    callableFloor.push(await timed(() => callFunction("getBalance", {}, { uid })));
    callable.push(
      await timed(() =>
        callFunction("createJob", { type: "report", input: report, idempotency_key: `bench-${randomUUID()}` }, { uid }),
      ),
    );
  }

  // Queued → succeeded with a no-op worker (jobs created above are drained first).
  const worker = await startWorker({
    type: "podcast",
    functionsBaseUrl: suite.functionsBaseUrl,
    apiKey: env("WORKER_API_KEY"),
    redisUrl: suite.redisUrl,
    noop: true,
  });
  const latency: number[] = [];
  try {
    for (let i = 0; i < Math.min(samples, 15); i++) {
      const answer = await callFunction<{ job_id: string }>(
        "createJob",
        { type: "podcast", input, idempotency_key: `bench-${randomUUID()}` },
        { uid },
      );
      if (!answer.result) throw new Error(`createJob failed: ${JSON.stringify(answer.error)}`);
      const queuedAt = performance.now();
      latency.push(
        await new Promise<number>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error("job did not succeed within 60 s")), 60_000);
          const stop = db
            .collection("jobs")
            .doc(answer.result!.job_id)
            .onSnapshot((snapshot) => {
              if (snapshot.get("status") === "succeeded") {
                clearTimeout(timer);
                stop();
                resolve(performance.now() - queuedAt);
              }
            }, reject);
        }),
      );
    }
  } finally {
    await worker.stop();
  }

  const floorP50 = median(floor);
  const callableFloorP50 = median(callableFloor);
  return [
    { scenario: "jobs", name: "bare transaction p50 (floor)", value: floorP50, unit: "ms" },
    {
      scenario: "jobs",
      name: "createJob use case p50",
      value: median(useCase),
      unit: "ms",
      ratio: median(useCase) / floorP50,
      note: "idempotency + account + hold + job in one transaction",
    },
    { scenario: "jobs", name: "getBalance callable p50 (floor)", value: callableFloorP50, unit: "ms" },
    {
      scenario: "jobs",
      name: "createJob callable p50",
      value: median(callable),
      unit: "ms",
      ratio: median(callable) / callableFloorP50,
    },
    {
      scenario: "jobs",
      name: "createJob callable p95",
      value: percentile(callable, 95),
      unit: "ms",
      ratio: percentile(callable, 95) / callableFloorP50,
    },
    {
      scenario: "jobs",
      name: "queued → succeeded p50 (no-op worker)",
      value: median(latency),
      unit: "ms",
      ratio: median(latency) / callableFloorP50,
      note: "trigger → stream → worker → report, vs one callable",
    },
  ];
}
