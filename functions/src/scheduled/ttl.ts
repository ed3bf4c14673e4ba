/**
 * The `ttlCleanup` use case: apply every retention policy, page by page,
 * within a time budget, and resume where it stopped on the next run.
 *
 * - Firestore deletes go in batches of ≤ 500, each delete with a
 *   `lastUpdateTime` precondition: a document changed since it was read (and
 *   so perhaps no longer matching) is skipped, never deleted. A document a
 *   live one still points at (`keepReferencedBy`) is skipped too. Reading streams
 *   while the deletes of earlier pages are in flight (see deleteMatching).
 * - The budget is checked after every page (`pageSize` documents).
 * - When the budget runs out, the policy (and, for releases, the cursor) is saved in
 *   `scheduler_state/{stateId}`; the next run starts there, so later policies
 *   are never starved by a large first one. At least one page is done per run.
 */
import { isDeepStrictEqual } from "node:util";
import type { Database, Reference } from "firebase-admin/database";
import type { BulkWriter, BulkWriterOptions, Firestore, Query, QueryDocumentSnapshot } from "firebase-admin/firestore";
import type { Db } from "mongodb";
import type { Connection } from "@lancedb/lancedb";
import type { Clock } from "../shared/time";
import type {
  FirestorePolicy,
  LancePolicy,
  MongoPolicy,
  ReleaseExpiredHold,
  RetentionPolicy,
  RtdbQueuePolicy,
} from "./policies";

export const SCHEDULER_STATE = "scheduler_state";

export interface TtlDeps {
  db: Firestore;
  clock: Clock;
  policies: RetentionPolicy[];
  releaseExpiredHold: ReleaseExpiredHold;
  /** Stores other than Firestore; a policy whose store is not given is skipped (and logged). */
  rtdb?: () => Database;
  mongo?: () => Promise<Db>;
  lance?: () => Promise<Connection>;
  budgetMs: number;
  pageSize: number;
  /** Where the resume point is kept; tests use their own. */
  stateId?: string;
  /** Monotonic milliseconds, for the budget (the injected clock may be fixed). */
  elapsedMs?: () => number;
  /** Settings of the BulkWriter that redoes a failed batch one document at a time. */
  writerOptions?: BulkWriterOptions;
  /** Pages of references one delete query streams (default 50): a query's cost is mostly fixed. */
  pagesPerQuery?: number;
  /** Delete batches committed at once (default 4). */
  batchesInFlight?: number;
  /** Holds released concurrently within a page. */
  releaseConcurrency?: number;
}

/** Where a policy stopped: the last document handled (Firestore) or parent key (RTDB). */
export interface Cursor {
  seconds?: number;
  nanoseconds?: number;
  id: string;
}

export interface PolicyOutcome {
  policy: string;
  /** Documents (or entries) the policy matched this run. */
  matched: number;
  /** Removed, released or compacted. */
  applied: number;
  /** Matched but left alone (changed since read, or failed). */
  skipped: number;
  pages: number;
  done: boolean;
  error?: string;
}

export interface TtlOutcome {
  complete: boolean;
  policies: PolicyOutcome[];
}

interface State {
  policy: string;
  cursor: Cursor | null;
}

class Budget {
  private pages = 0;
  private readonly start: number;

  constructor(private readonly budgetMs: number, private readonly elapsed: () => number) {
    this.start = elapsed();
  }

  /** True once the time is up, but never before the run has done one page. */
  exhausted(): boolean {
    return this.pages > 0 && this.elapsed() - this.start >= this.budgetMs;
  }

  page(): void {
    this.pages += 1;
  }
}

/** Applies the policies (see the module comment); returns what each did. */
export async function runTtlCleanup(deps: TtlDeps): Promise<TtlOutcome> {
  const stateRef = deps.db.collection(SCHEDULER_STATE).doc(deps.stateId ?? "ttlCleanup");
  const saved = (await stateRef.get()).data() as State | undefined;
  const budget = new Budget(deps.budgetMs, deps.elapsedMs ?? (() => performance.now()));
  const startAt = Math.max(0, deps.policies.findIndex((policy) => policy.name === saved?.policy));
  const ordered = [...deps.policies.slice(startAt), ...deps.policies.slice(0, startAt)];

  const outcomes: PolicyOutcome[] = [];
  for (const [index, policy] of ordered.entries()) {
    const resumeFrom = index === 0 && saved?.policy === policy.name ? saved.cursor : null;
    const { outcome, cursor } = await applyPolicy(deps, policy, resumeFrom, budget);
    outcomes.push(outcome);
    if (!outcome.done) {
      await stateRef.set({ policy: policy.name, cursor, updated_at: deps.clock.now() });
      return { complete: false, policies: outcomes };
    }
  }
  if (saved) await stateRef.delete();
  return { complete: true, policies: outcomes };
}

async function applyPolicy(
  deps: TtlDeps,
  policy: RetentionPolicy,
  cursor: Cursor | null,
  budget: Budget,
): Promise<{ outcome: PolicyOutcome; cursor: Cursor | null }> {
  const outcome: PolicyOutcome = { policy: policy.name, matched: 0, applied: 0, skipped: 0, pages: 0, done: false };
  try {
    switch (policy.store) {
      case "firestore":
        return { outcome, cursor: await applyFirestore(deps, policy, cursor, budget, outcome) };
      case "rtdb":
        return { outcome, cursor: await applyRtdb(deps, policy, cursor, budget, outcome) };
      case "mongodb":
        await applyMongo(deps, policy, budget, outcome);
        return { outcome, cursor: null };
      case "lancedb":
        await applyLance(deps, policy, budget, outcome);
        return { outcome, cursor: null };
    }
  } catch (error) {
    // A store that is down must not stop the other policies; this one is retried next run from the start.
    outcome.error = error instanceof Error ? error.message.split("\n")[0].slice(0, 200) : String(error);
    outcome.done = true;
    return { outcome, cursor: null };
  }
}

function cutoff(deps: TtlDeps, ageMs: number): Date {
  return new Date(deps.clock.now().getTime() - ageMs);
}

function matchingQuery(deps: TtlDeps, policy: FirestorePolicy): Query {
  const { FieldPath } = require("firebase-admin/firestore") as typeof import("firebase-admin/firestore");
  let query: Query = deps.db.collection(policy.collection);
  for (const condition of policy.where) query = query.where(condition.field, condition.op, condition.value);
  return query
    .where(policy.timestampField, "<", cutoff(deps, policy.ageMs))
    .orderBy(policy.timestampField)
    .orderBy(FieldPath.documentId());
}

async function applyFirestore(
  deps: TtlDeps,
  policy: FirestorePolicy,
  resumeFrom: Cursor | null,
  budget: Budget,
  outcome: PolicyOutcome,
): Promise<Cursor | null> {
  return policy.action === "delete"
    ? deleteMatching(deps, policy, budget, outcome)
    : releaseMatching(deps, policy, resumeFrom, budget, outcome);
}

/**
 * Deletes stream: one query reads up to `pagesPerQuery` pages of bare
 * references (a query's cost is mostly fixed, so few long scans beat many
 * short ones). Each page becomes one batch of ≤ 500 deletes, committed while
 * the next page is read (at most `batchesInFlight` at once); every delete has
 * a `lastUpdateTime` precondition. A batch that fails (one changed document
 * fails the whole batch) is redone document by document through a
 * BulkWriter, where a failed precondition skips just that document.
 * Deleted documents leave the query's results, so the next scan starts from
 * the beginning again and no cursor is needed; a run cut by the budget
 * resumes at this policy.
 */
async function deleteMatching(deps: TtlDeps, policy: FirestorePolicy, budget: Budget, outcome: PolicyOutcome): Promise<null> {
  const query = matchingQuery(deps, policy).select();
  const pageSize = Math.min(deps.pageSize, 500);
  const scanLimit = pageSize * (deps.pagesPerQuery ?? 50);
  const inFlight = new Set<Promise<void>>();
  let fallback: BulkWriter | undefined;

  const redoOneByOne = async (docs: QueryDocumentSnapshot[]) => {
    if (!fallback) {
      fallback = deps.db.bulkWriter(deps.writerOptions);
      fallback.onWriteError((error) => error.code !== 9 && error.failedAttempts < 5);
    }
    const writer = fallback;
    const results = docs.map((doc) =>
      writer.delete(doc.ref, { lastUpdateTime: doc.updateTime }).then(
        () => (outcome.applied += 1),
        () => (outcome.skipped += 1),
      ),
    );
    await writer.flush();
    await Promise.all(results);
  };

  const commit = async (matched: QueryDocumentSnapshot[]) => {
    const docs = await unreferenced(deps, policy, matched);
    outcome.skipped += matched.length - docs.length;
    if (docs.length === 0) return;
    const batch = deps.db.batch();
    for (const doc of docs) batch.delete(doc.ref, { lastUpdateTime: doc.updateTime });
    try {
      await batch.commit();
      outcome.applied += docs.length;
    } catch {
      await redoOneByOne(docs);
    }
  };

  const send = async (docs: QueryDocumentSnapshot[]) => {
    while (inFlight.size >= (deps.batchesInFlight ?? 4)) await Promise.race(inFlight);
    const pending: Promise<void> = commit(docs).finally(() => inFlight.delete(pending));
    inFlight.add(pending);
  };

  try {
    for (;;) {
      if (budget.exhausted()) return null;
      const appliedBefore = outcome.applied;
      let read = 0;
      let cut = false;
      let page: QueryDocumentSnapshot[] = [];
      const documents = query.limit(scanLimit).stream() as unknown as AsyncIterable<QueryDocumentSnapshot>;
      for await (const doc of documents) {
        read += 1;
        outcome.matched += 1;
        page.push(doc);
        if (page.length === pageSize) {
          await send(page);
          page = [];
          budget.page();
          outcome.pages += 1;
          if (budget.exhausted()) {
            cut = true;
            break;
          }
        }
      }
      if (page.length > 0 || read === 0) {
        if (page.length > 0) await send(page);
        budget.page();
        outcome.pages += 1;
      }
      await Promise.all(inFlight);
      if (cut) return null;
      // Everything read this scan was left alone: rescanning would find the same documents.
      if (read < scanLimit || outcome.applied === appliedBefore) {
        outcome.done = true;
        return null;
      }
    }
  } finally {
    await Promise.allSettled(inFlight);
    await fallback?.close();
  }
}

/** Firestore's limit on the values of one `in` filter. */
const IN_LIMIT = 30;

/**
 * The documents of a page no live document points at (see `keepReferencedBy`).
 * The pointer is read after the page: a pointer set before this read keeps
 * its document; one set later must come with a write to the document itself
 * (health resolves or creates the alert in the transaction that moves it),
 * which fails the delete's `lastUpdateTime` precondition.
 */
async function unreferenced(deps: TtlDeps, policy: FirestorePolicy, docs: QueryDocumentSnapshot[]): Promise<QueryDocumentSnapshot[]> {
  const guard = policy.keepReferencedBy;
  if (!guard || docs.length === 0) return docs;
  const referenced = new Set<string>();
  for (let start = 0; start < docs.length; start += IN_LIMIT) {
    const ids = docs.slice(start, start + IN_LIMIT).map((doc) => doc.id);
    const pointers = await deps.db.collection(guard.collection).where(guard.field, "in", ids).select(guard.field).get();
    for (const pointer of pointers.docs) referenced.add(String(pointer.get(guard.field)));
  }
  return docs.filter((doc) => !referenced.has(doc.id));
}

/**
 * Holds are released page by page through `releaseExpiredHold` (a
 * transaction each, a few at a time), following a cursor (timestamp,
 * document id) so a hold whose release failed is not retried in a loop; the
 * cursor is saved when the budget runs out.
 */
async function releaseMatching(
  deps: TtlDeps,
  policy: FirestorePolicy,
  resumeFrom: Cursor | null,
  budget: Budget,
  outcome: PolicyOutcome,
): Promise<Cursor | null> {
  const { Timestamp } = require("firebase-admin/firestore") as typeof import("firebase-admin/firestore");
  // Only references and the cursor's field are needed: each release reads the hold in its own transaction.
  const query = matchingQuery(deps, policy).select(policy.timestampField);
  let cursor = resumeFrom;
  for (;;) {
    if (budget.exhausted()) return cursor;
    const page = cursor ? query.startAfter(new Timestamp(cursor.seconds ?? 0, cursor.nanoseconds ?? 0), cursor.id) : query;
    const snapshot = await page.limit(deps.pageSize).get();
    budget.page();
    outcome.pages += 1;
    outcome.matched += snapshot.size;
    await releaseAll(deps, snapshot.docs, outcome);
    const last = snapshot.docs[snapshot.docs.length - 1];
    if (last) cursor = cursorOf(last, policy.timestampField);
    if (snapshot.size < deps.pageSize) {
      outcome.done = true;
      return null;
    }
  }
}

function cursorOf(doc: QueryDocumentSnapshot, field: string): Cursor {
  const value = doc.get(field) as { seconds: number; nanoseconds: number } | undefined;
  return value ? { seconds: value.seconds, nanoseconds: value.nanoseconds, id: doc.id } : { id: doc.id };
}

async function releaseAll(deps: TtlDeps, docs: QueryDocumentSnapshot[], outcome: PolicyOutcome): Promise<void> {
  const concurrency = deps.releaseConcurrency ?? 8;
  let next = 0;
  const worker = async () => {
    while (next < docs.length) {
      const doc = docs[next++];
      try {
        await deps.releaseExpiredHold(deps.db, doc.id, deps.clock);
        outcome.applied += 1;
      } catch {
        outcome.skipped += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, docs.length) }, worker));
}

async function applyRtdb(
  deps: TtlDeps,
  policy: RtdbQueuePolicy,
  resumeFrom: Cursor | null,
  budget: Budget,
  outcome: PolicyOutcome,
): Promise<Cursor | null> {
  if (!deps.rtdb) throw new Error("no Realtime Database given");
  const root = deps.rtdb().ref(policy.path);
  const oldest = cutoff(deps, policy.ageMs).getTime();
  let lastKey = resumeFrom?.id;
  for (;;) {
    if (budget.exhausted()) return lastKey ? { id: lastKey } : null;
    // startAt + skip rather than startAfter: the local RTDB substitute knows only the former.
    const query = lastKey
      ? root.orderByKey().startAt(lastKey).limitToFirst(deps.pageSize + 1)
      : root.orderByKey().limitToFirst(deps.pageSize);
    const snapshot = await query.once("value");
    budget.page();
    outcome.pages += 1;
    const parents = Object.entries((snapshot.val() ?? {}) as Record<string, Record<string, unknown>>)
      .filter(([key]) => key !== lastKey)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const removals: Array<{ path: string; read: unknown }> = [];
    for (const [parent, entries] of parents) {
      for (const [child, entry] of Object.entries(entries ?? {})) {
        if (typeof entry !== "object" || entry === null) continue;
        const { status, [policy.timestampField]: at } = entry as Record<string, unknown>;
        if (typeof status === "string" && policy.statusIn.includes(status) && typeof at === "number" && at < oldest) {
          removals.push({ path: `${parent}/${child}`, read: entry });
        }
      }
    }
    outcome.matched += removals.length;
    for (const { path, read } of removals) {
      try {
        if (await removeIfUnchanged(root.child(path), read)) outcome.applied += 1;
        else outcome.skipped += 1;
      } catch {
        outcome.skipped += 1; // one entry failing never stops the page (invariant 14)
      }
    }
    if (parents.length > 0) lastKey = parents[parents.length - 1][0];
    if (parents.length < deps.pageSize) {
      outcome.done = true;
      return null;
    }
  }
}

/**
 * Removes an RTDB entry only if it still equals what was read (invariant 13):
 * an entry rewritten since the page was read (say, re-queued under the same id)
 * stays. The check and the removal are one RTDB transaction. A null first guess
 * is answered with null: a no-op if the entry is gone, and if it is only not
 * cached, the server refuses the guess and the check runs on the real value.
 */
export async function removeIfUnchanged(ref: Reference, read: unknown): Promise<boolean> {
  let removed = false;
  const result = await ref.transaction((current: unknown) => {
    removed = current !== null && isDeepStrictEqual(current, read);
    if (current === null) return null;
    return removed ? null : undefined;
  }, undefined, false);
  return result.committed && removed;
}

async function applyMongo(deps: TtlDeps, policy: MongoPolicy, budget: Budget, outcome: PolicyOutcome): Promise<void> {
  if (!deps.mongo) throw new Error("no MongoDB given");
  const collection = (await deps.mongo()).collection(policy.collection);
  const expired = { [policy.timestampField]: { $lt: cutoff(deps, policy.ageMs) } };
  for (;;) {
    if (budget.exhausted()) return;
    const ids = (await collection.find(expired, { projection: { _id: 1 } }).limit(deps.pageSize).toArray()).map((doc) => doc._id);
    budget.page();
    outcome.pages += 1;
    outcome.matched += ids.length;
    if (ids.length > 0) {
      // The expiry condition is repeated so a document extended since it was read stays.
      const result = await collection.deleteMany({ _id: { $in: ids }, ...expired });
      outcome.applied += result.deletedCount;
      outcome.skipped += ids.length - result.deletedCount;
    }
    if (ids.length < deps.pageSize) {
      outcome.done = true;
      return;
    }
  }
}

async function applyLance(deps: TtlDeps, policy: LancePolicy, budget: Budget, outcome: PolicyOutcome): Promise<void> {
  if (!deps.lance) throw new Error("no LanceDB given");
  const connection = await deps.lance();
  const olderThan = cutoff(deps, policy.ageMs);
  for (const name of await connection.tableNames()) {
    // Compaction of one table is not resumable mid-way, so the budget is checked between tables.
    if (budget.exhausted()) return;
    const table = await connection.openTable(name);
    try {
      const stats = await table.optimize({ cleanupOlderThan: olderThan });
      outcome.matched += 1;
      outcome.applied += stats.prune.oldVersionsRemoved;
    } finally {
      table.close();
    }
    budget.page();
    outcome.pages += 1;
  }
  outcome.done = true;
}
