/**
 * The credits-expiring warning for users who make no change: `mirrorUserBalance`
 * judges the warning only when a user document is written, so a user who does
 * not spend in the 3 days before an expiry would never hear of it. This pass
 * (run hourly after the allowance pass, see credits/functions.ts) reads every
 * active lot expiring within the next 3 days, groups them per user and expiry
 * instant, and hands each group to `observeExpiring`, the one judge of the
 * warning: its dedupe key (`credits_expiring:{uid}:{at}`) is what makes it
 * once per user and expiry, whichever of the trigger or this pass sees it
 * first, and however many passes see it again.
 *
 * Paged and resumable within a time budget, like retention: when the budget
 * runs out, the place (the last lot of the last group warned) is saved in
 * `scheduler_state/{stateId}` and the next run resumes there; a lot group cut
 * by the page end is read again rather than judged on part of its credits.
 * A finished pass starts over from the current time on the next run, so a
 * warning that failed (or credits added since) is judged again while the
 * expiry is still within the window.
 */
import type { Firestore } from "firebase-admin/firestore";
import { expiringLots, type ExpiringCursor } from "../credits";
import { logs } from "../shared/logs";
import { systemClock, type Clock } from "../shared/time";
import { EXPIRY_WARNING_MS, observeExpiring, type LowBalanceDeps } from "./low-balance";

export const EXPIRY_WARNING_STATE = { collection: "scheduler_state", doc: "expiryWarnings" } as const;

export interface ExpiryWarningDeps {
  db: Firestore;
  notify: LowBalanceDeps["notify"];
  /** LOW_BALANCE_THRESHOLD: the least credits of one expiry worth a warning. */
  threshold: number;
  clock?: Clock;
  budgetMs: number;
  pageSize: number;
  /** Groups judged at once within a page. */
  concurrency?: number;
  /** Where the place is kept; tests use their own. */
  stateId?: string;
  /** Monotonic milliseconds, for the budget (the injected clock may be fixed). */
  elapsedMs?: () => number;
}

export interface ExpiryWarningRun {
  /** The pass reached the end of the window. */
  complete: boolean;
  lots: number;
  /** (user, expiry) groups judged. */
  groups: number;
  warned: number;
  failed: number;
}

/** A user's credits expiring at one instant; `last` is its last lot in scan order. */
interface Group {
  uid: string;
  at: number;
  amount: number;
  last: ExpiringCursor;
}

interface State {
  cursor: ExpiringCursor | null;
}

export async function warnExpiringCredits(deps: ExpiryWarningDeps): Promise<ExpiryWarningRun> {
  const clock = deps.clock ?? systemClock;
  const elapsed = deps.elapsedMs ?? (() => performance.now());
  const started = elapsed();
  const now = clock.now();
  const stateRef = deps.db.collection(EXPIRY_WARNING_STATE.collection).doc(deps.stateId ?? EXPIRY_WARNING_STATE.doc);
  const saved = (await stateRef.get()).data() as State | undefined;
  const run: ExpiryWarningRun = { complete: false, lots: 0, groups: 0, warned: 0, failed: 0 };

  const judge = async (group: Group) => {
    try {
      const created = await observeExpiring(
        deps,
        group.uid,
        { amount: group.amount, at: group.at },
        now,
        deps.threshold,
      );
      // Not `run.warned += await …`: that reads the count before the await, and concurrent judges would lose updates.
      run.warned += created;
    } catch (error) {
      // Judged again by the next pass while the expiry is within the window.
      run.failed += 1;
      logs.notificationFailed(`credits_expiring:${group.uid}:${group.at}`, error);
    }
  };
  const judgeAll = async (groups: Group[]) => {
    let next = 0;
    const worker = async () => {
      while (next < groups.length) await judge(groups[next++]);
    };
    await Promise.all(Array.from({ length: Math.min(deps.concurrency ?? 8, groups.length) }, worker));
    run.groups += groups.length;
  };

  /** Where the next run resumes: after the last group judged (never inside one). */
  let place = saved?.cursor ?? null;
  /** Where the next page is read from: after the last lot read. */
  let read = place;
  let current: Group | null = null;
  let advanced = false;
  for (;;) {
    const page = await expiringLots(deps.db, now.getTime(), now.getTime() + EXPIRY_WARNING_MS, read, deps.pageSize);
    run.lots += page.length;
    const closed: Group[] = [];
    for (const lot of page) {
      if (current && current.uid === lot.uid && current.at === lot.at) {
        current.amount += lot.unheld;
        current.last = lot.cursor;
        continue;
      }
      if (current) closed.push(current);
      current = { uid: lot.uid, at: lot.at, amount: lot.unheld, last: lot.cursor };
    }
    if (page.length > 0) read = page[page.length - 1].cursor;
    // The current group may go on in the next page, unless this one was the last.
    const end = page.length < deps.pageSize;
    if (end && current) closed.push(current);
    await judgeAll(closed);
    if (closed.length > 0) {
      place = closed[closed.length - 1].last;
      advanced = true;
    }
    if (end) break;
    // Stop only once this run has moved the place, so every run makes progress.
    if (advanced && elapsed() - started >= deps.budgetMs) {
      await stateRef.set({ cursor: place, updated_at: now });
      return run;
    }
  }
  if (saved) await stateRef.delete();
  run.complete = true;
  return run;
}
