/**
 * spendCredits through the functions emulator, against a floor measured in the
 * same run on the same Firestore emulator: a bare one-document read-then-write
 * transaction from this process.
 *   latency: p50/p95 of sequential calls (target p50 ≤ 1.5× the floor)
 *   throughput: N concurrent spends on one user vs N concurrent bare transactions on one document
 *   lots: spend p50 for a user with 20 active credit lots vs one with a single lot (target ≤ 1.3×)
 */
import { randomUUID } from "node:crypto";
import { firestore } from "../functions/src/adapters/firebase";
import { grantCredits } from "../functions/src/credits/operations";
import { callFunction } from "../test/support/suite";
import { percentile, type Row } from "./stats";

async function timed<T>(work: () => Promise<T>): Promise<number> {
  const started = performance.now();
  await work();
  return performance.now() - started;
}

/**
 * Pushes its rows into `rows` as they are measured, so a later failure (a
 * burst timing out on a busy machine) keeps the latency rows already taken.
 */
export async function creditsBench(rows: Row[], samples = 60, concurrent = 20): Promise<void> {
  const db = firestore();
  const floorDoc = db.collection("bench_floor").doc(randomUUID());
  await floorDoc.set({ n: 0 });
  const bareTransaction = () =>
    db.runTransaction(async (tx) => {
      const snapshot = await tx.get(floorDoc);
      tx.update(floorDoc, { n: Number(snapshot.get("n")) + 1 });
    });

  const uid = `bench-${randomUUID().slice(0, 8)}`;
  await grantCredits({ db }, "bench", {
    user_id: uid,
    amount: 1_000_000,
    type: "grant",
    reason: "bench",
    idempotency_key: `bench-${uid}`,
  });
  // A user whose credits are in 20 lots (different expiries, so they stay 20): a spend reads the first page of them.
  const manyLots = `bench-lots-${randomUUID().slice(0, 8)}`;
  for (let lot = 0; lot < 20; lot++) {
    await grantCredits({ db }, "bench", {
      user_id: manyLots,
      amount: 50_000,
      type: "grant",
      expires_at: new Date(Date.now() + (30 + lot) * 86_400_000).toISOString(),
      reason: "bench",
      idempotency_key: `bench-${manyLots}-${lot}`,
    });
  }
  const spendAs = async (user: string) => {
    const answer = await callFunction(
      "spendCredits",
      { feature: "chat.message", quantity: 1, idempotency_key: randomUUID() },
      { uid: user },
    );
    if (!answer.result) throw new Error(`spend failed: ${JSON.stringify(answer.error)}`);
  };
  const spend = () => spendAs(uid);

  // Warm both paths (the emulator's worker, gRPC channels, Redis connections).
  for (let i = 0; i < 5; i++) {
    await bareTransaction();
    await spend();
    await spendAs(manyLots);
  }
  const floor: number[] = [];
  const spends: number[] = [];
  const lotSpends: number[] = [];
  // Interleaved, so noise on this shared machine hits all alike.
  for (let i = 0; i < samples; i++) {
    floor.push(await timed(bareTransaction));
    spends.push(await timed(spend));
    lotSpends.push(await timed(() => spendAs(manyLots)));
  }
  // Context: the functions emulator's own cost for a callable (a cache hit touches no Firestore).
  const roundTrips: number[] = [];
  for (let i = 0; i < samples; i++) roundTrips.push(await timed(() => callFunction("getBalance", {}, { uid })));

  const floorP50 = percentile(floor, 50);
  rows.push(
    {
      scenario: "spendCredits",
      name: "floor p50 (bare read-then-write transaction)",
      value: floorP50,
      unit: "ms",
      ratio: 1,
    },
    { scenario: "spendCredits", name: "floor p95", value: percentile(floor, 95), unit: "ms" },
    {
      scenario: "spendCredits",
      name: "p50 through the functions emulator",
      value: percentile(spends, 50),
      unit: "ms",
      ratio: percentile(spends, 50) / floorP50,
      target: "≤ 1.5×",
      pass: percentile(spends, 50) / floorP50 <= 1.5,
    },
    {
      scenario: "spendCredits",
      name: "p95 through the functions emulator",
      value: percentile(spends, 95),
      unit: "ms",
      ratio: percentile(spends, 95) / percentile(floor, 95),
    },
    {
      scenario: "spendCredits",
      name: "p50 with 20 active credit lots (ratio: vs the single-lot user above)",
      value: percentile(lotSpends, 50),
      unit: "ms",
      ratio: percentile(lotSpends, 50) / percentile(spends, 50),
      target: "≤ 1.3×",
      pass: percentile(lotSpends, 50) / percentile(spends, 50) <= 1.3,
    },
    {
      scenario: "spendCredits",
      name: "context: getBalance p50 (cache hit: emulator + callable overhead only)",
      value: percentile(roundTrips, 50),
      unit: "ms",
      ratio: percentile(roundTrips, 50) / floorP50,
    },
  );

  // The emulator starts a worker per concurrent request it has no idle worker for: an untimed burst first, so the
  // timed one measures the code rather than cold starts (and a cold start timing out here does not end the run).
  await Promise.allSettled(Array.from({ length: concurrent }, spend));
  const floorBurst = await timed(() => Promise.all(Array.from({ length: concurrent }, bareTransaction)));
  const spendBurst = await timed(() => Promise.all(Array.from({ length: concurrent }, spend)));
  const floorRate = (concurrent / floorBurst) * 1000;
  const spendRate = (concurrent / spendBurst) * 1000;
  rows.push(
    {
      scenario: "spendCredits",
      name: `floor: ${concurrent} concurrent transactions on one document`,
      value: floorRate,
      unit: "tx/s",
      ratio: 1,
    },
    {
      scenario: "spendCredits",
      name: `${concurrent} concurrent spends on one user`,
      value: spendRate,
      unit: "spends/s",
      ratio: spendRate / floorRate,
      note: "ratio > 1 is better here",
    },
  );
}
