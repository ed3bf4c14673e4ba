/**
 * ttlCleanup throughput: deletes per second of the retention runner on 20,000
 * expired documents, against a floor measured in the same run: a BulkWriter
 * deleting the same number of documents by reference (no query, no
 * precondition), with throttling off (the emulator has no ramp-up rule to
 * respect, and the 500/50/5 throttle would otherwise be all that is
 * measured). ttlCleanup gets the same writer settings for its fallback path.
 * Rounds alternate which goes first.
 */
import type { Firestore } from "firebase-admin/firestore";
import { firestore } from "../functions/src/adapters/firebase";
import { releaseExpiredHold } from "../functions/src/credits/holds";
import type { RetentionPolicy } from "../functions/src/retention/policies";
import { runTtlCleanup } from "../functions/src/retention/runner";
import { median, type Row } from "./stats";

const WRITER = { throttling: false } as const;

async function seed(db: Firestore, collection: string, count: number, expireAt: Date): Promise<string[]> {
  const writer = db.bulkWriter(WRITER);
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const id = `d${String(i).padStart(6, "0")}`;
    ids.push(id);
    void writer.set(db.collection(collection).doc(id), { expire_at: expireAt, payload: "x".repeat(64) });
  }
  await writer.close();
  return ids;
}

async function floorRun(db: Firestore, count: number, tag: string): Promise<number> {
  const collection = `bench_ttl_floor_${tag}`;
  const ids = await seed(db, collection, count, new Date(Date.now() - 60_000));
  const start = performance.now();
  const writer = db.bulkWriter(WRITER);
  for (const id of ids) void writer.delete(db.collection(collection).doc(id));
  await writer.close();
  return count / ((performance.now() - start) / 1000);
}

async function cleanupRun(db: Firestore, count: number, tag: string): Promise<number> {
  const collection = `bench_ttl_cleanup_${tag}`;
  await seed(db, collection, count, new Date(Date.now() - 60_000));
  const policy: RetentionPolicy = {
    name: "bench",
    store: "firestore",
    collection,
    timestampField: "expire_at",
    ageMs: 0,
    where: [],
    action: "delete",
  };
  const start = performance.now();
  const outcome = await runTtlCleanup({
    db,
    clock: { now: () => new Date() },
    policies: [policy],
    releaseExpiredHold,
    budgetMs: 600_000,
    pageSize: 500,
    stateId: `bench-${tag}`,
    writerOptions: WRITER,
  });
  const seconds = (performance.now() - start) / 1000;
  const deleted = outcome.policies[0]?.applied ?? 0;
  if (!outcome.complete || deleted !== count)
    throw new Error(`ttlCleanup deleted ${deleted} of ${count} (complete: ${outcome.complete})`);
  const left = await db.collection(collection).count().get();
  if (left.data().count !== 0) throw new Error(`${left.data().count} documents left`);
  return deleted / seconds;
}

export async function ttlBench(count = 20_000, rounds = 5): Promise<Row[]> {
  const db = firestore();
  const floors: number[] = [];
  const cleanups: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const tag = `${process.pid}_${round}`;
    if (round % 2 === 0) {
      floors.push(await floorRun(db, count, tag));
      cleanups.push(await cleanupRun(db, count, tag));
    } else {
      cleanups.push(await cleanupRun(db, count, tag));
      floors.push(await floorRun(db, count, tag));
    }
  }
  const floor = median(floors);
  const value = median(cleanups);
  const ratio = value / floor;
  return [
    {
      scenario: "ttl",
      name: `floor: BulkWriter delete by reference (${count})`,
      value: floor,
      unit: "deletes/s",
      ratio: 1,
    },
    {
      scenario: "ttl",
      name: `ttlCleanup on ${count} expired docs`,
      value,
      unit: "deletes/s",
      ratio,
      target: "≥ 0.8×",
      pass: ratio >= 0.8,
      note: `median of ${rounds} rounds; streamed query, batches of 500 with lastUpdateTime preconditions`,
    },
  ];
}
