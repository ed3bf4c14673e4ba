/**
 * `grantAllowances`: once a period (calendar month, UTC) begins, every user
 * gets its allowance (plans.ts), exactly once per user and period.
 *
 * One pass over `users` per period, page by page. The users due in a page are
 * granted in batches of `batchUsers`, `concurrency` batches at a time (across
 * pages: the next page starts while this one's last batches finish): each
 * batch reads its users' documents in bulk and writes them in one commit,
 * every write guarded by what was read (prefetched-transaction.ts), so a batch
 * costs two round trips where a transaction per user cost five per user.
 * Exactly once per user and period rests on the period's record, created (never
 * overwritten) in the commit that grants: a second run, `setPlan`, or any change
 * of the user since the read fails the batch's guards, and its users are then
 * granted one transaction each, which finds the record and grants nothing. Within a time budget: when it runs out, the place (period and last
 * user id) is saved in `scheduler_state/{stateId}` and the next run resumes
 * there. A pass that is done is not repeated within its period; users whose
 * grant failed are recorded with the reason (logged) and retried by the next
 * runs without blocking the others.
 */
import type { DocumentSnapshot, Firestore } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import { logs } from "../shared/logs";
import { SnapshotCache } from "../shared/read-ahead";
import { systemClock, type Clock } from "../shared/time";
import {
  allowanceReadRefs,
  grantDueAllowance,
  grantUserAllowance,
  loadPlans,
  periodOf,
  type AllowanceOutcome,
} from "./plans";
import { PrefetchedTransaction } from "./prefetched-transaction";
import type { PlansConfig } from "./schemas";

export const ALLOWANCE_STATE = { collection: "scheduler_state", doc: "grantAllowances" } as const;
/** Failed users kept for retry (bounded: the state is one document). */
const MAX_RETRY = 500;
/**
 * Users per commit: 4 documents each (user, entry, lot, record), so 40 users is a commit of about 160 writes,
 * well under Firestore's 500. One user changing under the pass sends the 39 others to the slow path; smaller
 * batches granted less in the bench (20 users per commit 3,100-4,000 documents/s, 40 or more 3,700-4,800).
 */
const BATCH_USERS = 40;

export interface AllowanceRunDeps {
  db: Firestore;
  clock?: Clock;
  budgetMs: number;
  pageSize: number;
  /** Batches of users granted at once within a page. */
  concurrency?: number;
  /** Users per batch (one commit); 1 still saves the transaction's round trips. */
  batchUsers?: number;
  /** Where the place is kept; tests use their own. */
  stateId?: string;
  /** Monotonic milliseconds, for the budget (the injected clock may be fixed). */
  elapsedMs?: () => number;
  /** The plans; read from `config/plans` when not given. */
  plans?: PlansConfig;
}

export interface AllowanceRun {
  period: string;
  /** The period's pass is done (failed users aside, retried next run). */
  complete: boolean;
  scanned: number;
  granted: number;
  /** Users already granted this period. */
  current: number;
  failed: Array<{ uid: string; reason: string }>;
  /** Users a batch could not take, granted (or refused) through their own transaction. */
  alone: number;
}

interface State {
  period: string;
  cursor: string | null;
  done: boolean;
  retry: string[];
}

export async function grantAllowances(deps: AllowanceRunDeps): Promise<AllowanceRun> {
  const clock = deps.clock ?? systemClock;
  const elapsed = deps.elapsedMs ?? (() => performance.now());
  const started = elapsed();
  const period = periodOf(clock.now()).id;
  const stateRef = deps.db.collection(ALLOWANCE_STATE.collection).doc(deps.stateId ?? ALLOWANCE_STATE.doc);
  const saved = (await stateRef.get()).data() as State | undefined;
  const state: State =
    saved?.period === period
      ? { ...saved, retry: saved.retry ?? [] }
      : { period, cursor: null, done: false, retry: [] };
  const run: AllowanceRun = { period, complete: false, scanned: 0, granted: 0, current: 0, failed: [], alone: 0 };
  const plans = deps.plans ?? (await loadPlans(deps.db));

  /** One user through its own transaction: the path of a retry, and of users a batch could not take. */
  const grantOne = async (uid: string) => {
    try {
      const outcome = await grantUserAllowance(deps.db, uid, plans, clock);
      if (outcome === "granted") run.granted += 1;
      else run.current += 1;
    } catch (error) {
      const reason = error instanceof Error ? error.message.split("\n")[0].slice(0, 200) : String(error);
      run.failed.push({ uid, reason });
      logs.allowanceFailed(uid, period, reason);
    }
  };

  /**
   * A few users in one commit (see prefetched-transaction.ts): what their grants read fetched in one `getAll`
   * (their documents come with the page), each user's grant decided by the same code as the transaction,
   * every write guarded by what was read. If the commit fails (a guard: a user changed since, or a concurrent
   * run granted first), nothing of it was written and each of its users goes through its own transaction,
   * which reads and decides again.
   */
  const grantBatch = async (users: DocumentSnapshot[]) => {
    const now = clock.now();
    const prefetch = new SnapshotCache((refs) => deps.db.getAll(...refs));
    prefetch.seed(users);
    await prefetch.load(
      users.flatMap((user) => (user.exists ? allowanceReadRefs(deps.db, user.id, plans, now, user.data() ?? {}) : [])),
    );
    const batch = deps.db.batch();
    const batched: Array<{ uid: string; outcome: AllowanceOutcome }> = [];
    const alone: string[] = [];
    for (const { id: uid } of users) {
      const tx = new PrefetchedTransaction(prefetch);
      try {
        const outcome = await grantDueAllowance(tx.asTransaction(), deps.db, uid, plans, now);
        tx.commitInto(batch);
        batched.push({ uid, outcome });
      } catch {
        // Nothing of this user is in the batch; its own transaction decides (and records a refusal).
        alone.push(uid);
      }
    }
    try {
      if (batched.length > 0) await batch.commit();
      for (const { outcome } of batched) {
        if (outcome === "granted") run.granted += 1;
        else run.current += 1;
      }
    } catch {
      alone.push(...batched.map((entry) => entry.uid));
    }
    run.alone += alone.length;
    for (const uid of alone) await grantOne(uid);
  };

  /**
   * `users` in batches of `batchUsers`, at most `concurrency` batches in flight across the run: a page's last
   * batches overlap the next page's first, rather than the workers idling until the slowest batch is done.
   */
  const slots = semaphore(deps.concurrency ?? 16);
  const grantAll = async (users: DocumentSnapshot[]) => {
    const size = Math.max(1, deps.batchUsers ?? BATCH_USERS);
    const batches = Array.from({ length: Math.ceil(users.length / size) }, (_, index) =>
      users.slice(index * size, (index + 1) * size),
    );
    await Promise.all(batches.map((batch) => slots(() => grantBatch(batch))));
  };

  if (state.done) {
    // The pass is over: only the users that failed are tried again.
    const retry = state.retry.map((uid) => deps.db.collection("users").doc(uid));
    await grantAll(retry.length > 0 ? await deps.db.getAll(...retry) : []);
    run.scanned = state.retry.length;
  } else {
    const { FieldPath } = firestoreValues();
    const pageAfter = (cursor: string | null) => {
      let query = deps.db.collection("users").orderBy(FieldPath.documentId()).limit(deps.pageSize);
      if (cursor) query = query.startAfter(cursor);
      const read = query.get();
      // Handled where it is awaited; a page read ahead and then left (the budget ran out) must not crash the run.
      read.catch(() => undefined);
      return read;
    };
    let ahead = pageAfter(state.cursor);
    let pages = 0;
    // The page being granted while the next is: pages finish in order, and the cursor moves past a page only
    // once it and every page before it are granted.
    let previous: Promise<void> = Promise.resolve();
    for (;;) {
      if (pages > 0 && elapsed() - started >= deps.budgetMs) {
        await previous;
        await stateRef.set({ ...state, retry: mergeRetry(state.retry, run.failed), updated_at: clock.now() });
        return run;
      }
      const page = await ahead;
      pages += 1;
      run.scanned += page.size;
      const last = page.docs[page.docs.length - 1];
      const more = page.size === deps.pageSize && last !== undefined;
      // The next page is read while this one is granted (its documents are only the batches' first guess).
      if (more) ahead = pageAfter(last.id);
      // Whole documents: a due user's grant reads its document, and the batch takes it from here.
      const due = page.docs.filter((doc) => doc.get("allowance_period") !== period);
      run.current += page.size - due.length;
      const granting = grantAll(due);
      // Handled where it is awaited (below, or at the next page); never left unhandled meanwhile.
      granting.catch(() => undefined);
      await previous;
      previous = granting.then(() => {
        if (last) state.cursor = last.id;
      });
      if (!more) break;
    }
    await previous;
  }
  const retry = mergeRetry(state.done ? [] : state.retry, run.failed);
  await stateRef.set({ period, cursor: null, done: true, retry, updated_at: clock.now() });
  run.complete = true;
  return run;
}

/** Runs at most `limit` of the tasks given to it at once, in the order given. */
function semaphore(limit: number): <T>(task: () => Promise<T>) => Promise<T> {
  let running = 0;
  const waiting: Array<() => void> = [];
  return async (task) => {
    if (running >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
    else running += 1;
    try {
      return await task();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else running -= 1;
    }
  };
}

function mergeRetry(retry: string[], failed: Array<{ uid: string }>): string[] {
  return [...new Set([...retry, ...failed.map((failure) => failure.uid)])].slice(0, MAX_RETRY);
}
