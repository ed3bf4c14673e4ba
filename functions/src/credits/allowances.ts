/**
 * `grantAllowances`: once a period (calendar month, UTC) begins, every user
 * gets its allowance (plans.ts), exactly once per user and period.
 *
 * One pass over `users` per period, page by page, many pages from one
 * streamed query. The users due in a page are granted in batches of
 * `batchUsers`, `concurrency` batches at a time (across pages: the next page
 * starts while this one's last batches finish): each batch reads its users'
 * documents and what their grants need in one `getAll` and writes them in one
 * commit (or a few: at most 500 writes each), every write guarded by what was
 * read (prefetched-transaction.ts), so a batch costs two round trips where a
 * transaction per user cost five per user.
 * Exactly once per user and period rests on the period's record, created (never
 * overwritten) in the commit that grants: a second run, `setPlan`, or any change
 * of the user since the read fails the batch's guards, and its users are then
 * granted one transaction each, which finds the record and grants nothing.
 * Within a time budget: when it runs out, the place (period and last user id)
 * is saved in `scheduler_state/{stateId}` and the next run resumes there. A
 * pass that is done is not repeated within its period; users whose grant
 * failed are recorded with the reason (logged) and retried by the next runs
 * without blocking the others.
 */
import type { DocumentSnapshot, Firestore, QueryDocumentSnapshot } from "firebase-admin/firestore";
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
 * Users per batch: read in one `getAll`, their writes committed in as few commits as Firestore's 500 writes allow
 * (MAX_COMMIT_WRITES; a grant writes 4 documents, a few more with a rollover). A user changing between the batch's
 * read and its commit sends the others of that commit to the slow path, but the two are one round trip apart. In
 * the bench, 20 users per batch granted 3,100-4,000 documents/s, 40 about 5,500-5,800 and 80 about 5,600-6,300.
 */
const BATCH_USERS = 80;
/** Firestore's limit of writes in one commit. */
const MAX_COMMIT_WRITES = 500;
/** Pages per streamed query of `users`, as retention's scans. */
const PAGES_PER_QUERY = 50;

export interface AllowanceRunDeps {
  db: Firestore;
  clock?: Clock;
  budgetMs: number;
  pageSize: number;
  /** Pages read by one streamed query (default PAGES_PER_QUERY). */
  pagesPerQuery?: number;
  /** Batches of users granted at once within a page. */
  concurrency?: number;
  /** Users per batch (one `getAll`, one commit unless 500 writes); 1 still saves the transaction's round trips. */
  batchUsers?: number;
  /** Writes per commit at most: Firestore's limit (MAX_COMMIT_WRITES) unless a test asks for fewer. */
  commitWrites?: number;
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
   * A batch of users (see prefetched-transaction.ts): their documents and what their grants read fetched in
   * one `getAll`, each user's grant decided by the same code as the transaction, every write guarded by what
   * was read. If a commit fails (a guard: a user changed since, or a concurrent run granted first), nothing of
   * it was written and each of its users goes through its own transaction, which reads and decides again.
   */
  const grantBatch = async (users: DocumentSnapshot[]) => {
    const now = clock.now();
    const prefetch = new SnapshotCache((refs) => deps.db.getAll(...refs));
    // The users' documents are read here, fresh, with what their grants will read (guessed from what the scan
    // saw of them: a guess missed is read when the grant asks for it).
    await prefetch.load(
      users.flatMap((user) => [
        user.ref,
        ...(user.exists ? allowanceReadRefs(deps.db, user.id, plans, now, user.data() ?? {}) : []),
      ]),
    );
    const decided: Array<{ uid: string; outcome: AllowanceOutcome; tx: PrefetchedTransaction }> = [];
    const alone: string[] = [];
    for (const { id: uid } of users) {
      const tx = new PrefetchedTransaction(prefetch);
      try {
        decided.push({ uid, outcome: await grantDueAllowance(tx.asTransaction(), deps.db, uid, plans, now), tx });
      } catch {
        // Nothing of this user is written here; its own transaction decides (and records a refusal).
        alone.push(uid);
      }
    }
    await Promise.all(
      commitsOf(decided, deps.commitWrites ?? MAX_COMMIT_WRITES).map(async (commit) => {
        try {
          if (commit.writes > 0) {
            const batch = deps.db.batch();
            for (const { tx } of commit.users) tx.commitInto(batch);
            await batch.commit();
          }
          for (const { outcome } of commit.users) {
            if (outcome === "granted") run.granted += 1;
            else run.current += 1;
          }
        } catch {
          alone.push(...commit.users.map((entry) => entry.uid));
        }
      }),
    );
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
    await grantAll(retry.length > 0 ? await deps.db.getAll(...retry, { fieldMask: [...SCANNED_FIELDS] }) : []);
    run.scanned = state.retry.length;
  } else {
    let pages = 0;
    // The page being granted while the next is read: pages finish in order, and the cursor moves past a page
    // only once it and every page before it are granted.
    let previous: Promise<void> = Promise.resolve();
    try {
      for await (const page of userPages(deps.db, state.cursor, deps.pageSize, deps.pagesPerQuery ?? PAGES_PER_QUERY)) {
        if (pages > 0 && elapsed() - started >= deps.budgetMs) {
          await previous;
          await stateRef.set({ ...state, retry: mergeRetry(state.retry, run.failed), updated_at: clock.now() });
          return run;
        }
        pages += 1;
        run.scanned += page.length;
        const last = page[page.length - 1];
        const due = page.filter((doc) => doc.get("allowance_period") !== period);
        run.current += page.length - due.length;
        const granting = grantAll(due);
        // Handled where it is awaited (below, or at the next page); never left unhandled meanwhile.
        granting.catch(() => undefined);
        await previous;
        previous = granting.then(() => {
          state.cursor = last.id;
        });
        // Likewise: awaited at the next page or after the scan.
        previous.catch(() => undefined);
      }
    } finally {
      // Also when the scan fails: the pass ends only once the grants it started have.
      await previous.catch(() => undefined);
    }
    await previous;
  }
  const retry = mergeRetry(state.done ? [] : state.retry, run.failed);
  await stateRef.set({ period, cursor: null, done: true, retry, updated_at: clock.now() });
  run.complete = true;
  return run;
}

/** What the scan reads of a user: whether the period is due, and what the grant will read (allowanceReadRefs). */
const SCANNED_FIELDS = ["allowance_period", "tier", "lots_since_version"] as const;

/**
 * The users after `cursor` in id order, `pageSize` at a time, from one streamed query per `pagesPerQuery` pages
 * (like retention's scans) rather than one query per page: a query's fixed cost is paid once per many pages,
 * and one more, empty, ends the scan.
 * Only SCANNED_FIELDS are read, since a batch reads its users' documents again anyway (a snapshot from the
 * start of a long scan would be stale by the time its user is granted, and fail the guard).
 */
async function* userPages(
  db: Firestore,
  cursor: string | null,
  pageSize: number,
  pagesPerQuery: number,
): AsyncGenerator<QueryDocumentSnapshot[]> {
  const { FieldPath } = firestoreValues();
  const limit = pageSize * pagesPerQuery;
  let after = cursor;
  for (;;) {
    let query = db
      .collection("users")
      .orderBy(FieldPath.documentId())
      .select(...SCANNED_FIELDS)
      .limit(limit);
    if (after !== null) query = query.startAfter(after);
    let read = 0;
    let page: QueryDocumentSnapshot[] = [];
    for await (const doc of query.stream() as AsyncIterable<QueryDocumentSnapshot>) {
      read += 1;
      after = doc.id;
      page.push(doc);
      if (page.length === pageSize) {
        yield page;
        page = [];
      }
    }
    if (page.length > 0) yield page;
    // Only an empty query ends the scan: one cut short (the SDK resumes a failed stream with a smaller limit) may
    // return fewer than `limit` with users left after it.
    if (read === 0) return;
  }
}

/** Users' changes in commits of at most `limit` writes, each user's writes whole in one commit. */
function commitsOf<T extends { tx: PrefetchedTransaction }>(
  users: T[],
  limit: number,
): Array<{ users: T[]; writes: number }> {
  const commits: Array<{ users: T[]; writes: number }> = [];
  for (const user of users) {
    const last = commits[commits.length - 1];
    if (last && last.writes + user.tx.writeCount <= limit) {
      last.users.push(user);
      last.writes += user.tx.writeCount;
    } else commits.push({ users: [user], writes: user.tx.writeCount });
  }
  return commits;
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
