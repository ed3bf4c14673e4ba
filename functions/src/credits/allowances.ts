/**
 * `grantAllowances`: once a period (calendar month, UTC) begins, every user
 * gets its allowance (plans.ts), exactly once per user and period.
 *
 * One pass over `users` per period, page by page, a few users at a time, each
 * user one transaction that re-checks the period recorded on the user
 * document. Within a time budget: when it runs out, the place (period and last
 * user id) is saved in `scheduler_state/{stateId}` and the next run resumes
 * there. A pass that is done is not repeated within its period; users whose
 * grant failed are recorded with the reason (logged) and retried by the next
 * runs without blocking the others.
 */
import type { Firestore } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import { logs } from "../shared/logs";
import { systemClock, type Clock } from "../shared/time";
import { grantUserAllowance, loadPlans, periodOf } from "./plans";
import type { PlansConfig } from "./schemas";

export const ALLOWANCE_STATE = { collection: "scheduler_state", doc: "grantAllowances" } as const;
/** Failed users kept for retry (bounded: the state is one document). */
const MAX_RETRY = 500;

export interface AllowanceRunDeps {
  db: Firestore;
  clock?: Clock;
  budgetMs: number;
  pageSize: number;
  /** Users granted at once within a page. */
  concurrency?: number;
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
  const run: AllowanceRun = { period, complete: false, scanned: 0, granted: 0, current: 0, failed: [] };
  const plans = deps.plans ?? (await loadPlans(deps.db));

  const grantAll = async (uids: string[]) => {
    let next = 0;
    const worker = async () => {
      while (next < uids.length) {
        const uid = uids[next++];
        try {
          const outcome = await grantUserAllowance(deps.db, uid, plans, clock);
          if (outcome === "granted") run.granted += 1;
          else run.current += 1;
        } catch (error) {
          const reason = error instanceof Error ? error.message.split("\n")[0].slice(0, 200) : String(error);
          run.failed.push({ uid, reason });
          logs.allowanceFailed(uid, period, reason);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(deps.concurrency ?? 16, uids.length) }, worker));
  };

  if (state.done) {
    // The pass is over: only the users that failed are tried again.
    await grantAll(state.retry);
    run.scanned = state.retry.length;
  } else {
    const { FieldPath } = firestoreValues();
    let pages = 0;
    for (;;) {
      if (pages > 0 && elapsed() - started >= deps.budgetMs) {
        await stateRef.set({ ...state, retry: mergeRetry(state.retry, run.failed), updated_at: clock.now() });
        return run;
      }
      let query = deps.db
        .collection("users")
        .orderBy(FieldPath.documentId())
        .select("allowance_period")
        .limit(deps.pageSize);
      if (state.cursor) query = query.startAfter(state.cursor);
      const page = await query.get();
      pages += 1;
      run.scanned += page.size;
      const due = page.docs.filter((doc) => doc.get("allowance_period") !== period).map((doc) => doc.id);
      run.current += page.size - due.length;
      await grantAll(due);
      const last = page.docs[page.docs.length - 1];
      if (last) state.cursor = last.id;
      if (page.size < deps.pageSize) break;
    }
  }
  const retry = mergeRetry(state.done ? [] : state.retry, run.failed);
  await stateRef.set({ period, cursor: null, done: true, retry, updated_at: clock.now() });
  run.complete = true;
  return run;
}

function mergeRetry(retry: string[], failed: Array<{ uid: string }>): string[] {
  return [...new Set([...retry, ...failed.map((failure) => failure.uid)])].slice(0, MAX_RETRY);
}
