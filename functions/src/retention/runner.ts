/**
 * The `ttlCleanup` use case: apply every retention policy, page by page,
 * within a time budget, and resume where it stopped on the next run.
 *
 * - Each store has its strategy in stores/; Firestore deletes go through
 *   firestore-delete.ts (batches, `lastUpdateTime` preconditions, the
 *   BulkWriter fallback, documents still referenced kept).
 * - The budget is checked after every page (`pageSize` documents).
 * - When the budget runs out, the policy (and, for releases, the cursor) is saved in
 *   `scheduler_state/{stateId}`; the next run starts there, so later policies
 *   are never starved by a large first one. At least one page is done per run.
 *
 * `runScheduledTtlCleanup` wires it to the live adapters and params for the
 * schedule trigger (loaded at run time only).
 */
import type { Database } from "firebase-admin/database";
import type { BulkWriterOptions, Firestore } from "firebase-admin/firestore";
import type { Db } from "mongodb";
import type { Connection } from "@lancedb/lancedb";
import { firestore, realtimeDb } from "../adapters/firebase";
import { lanceDb } from "../adapters/lance";
import { mongoConfigured, mongoDb } from "../adapters/mongo";
import { redis } from "../adapters/redis";
import {
  ALERTS_RETENTION_DAYS,
  AUDIT_RETENTION_DAYS,
  LANCEDB_VERSION_RETENTION_HOURS,
  OPERATION_QUEUE_RETENTION_HOURS,
  ROUTING_DECISIONS_RETENTION_DAYS,
  TTL_PAGE_SIZE,
  TTL_TIME_BUDGET_SECONDS,
} from "../config";
import { expireHolds } from "../jobs/expiry";
import { runOnce } from "../shared/dedupe";
import { logs } from "../shared/logs";
import { systemClock, type Clock } from "../shared/time";
import { retentionPolicies, type ExpireLot, type ReleaseExpiredHold, type RetentionPolicy } from "./policies";
import { applyFirestorePolicy } from "./stores/firestore";
import { applyLancePolicy } from "./stores/lance";
import { applyMongoPolicy } from "./stores/mongo";
import { applyRtdbPolicy } from "./stores/rtdb";

export const SCHEDULER_STATE = "scheduler_state";

export interface TtlDeps {
  db: Firestore;
  clock: Clock;
  policies: RetentionPolicy[];
  releaseExpiredHold: ReleaseExpiredHold;
  /** The `expire_lot` action; credits' expireDueLot when not given. */
  expireLot?: ExpireLot;
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

/** The run's time budget, counted in pages so every run does at least one. */
export class Budget {
  private pages = 0;
  private readonly start: number;

  constructor(
    private readonly budgetMs: number,
    private readonly elapsed: () => number,
  ) {
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
  const startAt = Math.max(
    0,
    deps.policies.findIndex((policy) => policy.name === saved?.policy),
  );
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
        return { outcome, cursor: await applyFirestorePolicy(deps, policy, cursor, budget, outcome) };
      case "rtdb":
        return { outcome, cursor: await applyRtdbPolicy(deps, policy, cursor, budget, outcome) };
      case "mongodb":
        await applyMongoPolicy(deps, policy, budget, outcome);
        return { outcome, cursor: null };
      case "lancedb":
        await applyLancePolicy(deps, policy, budget, outcome);
        return { outcome, cursor: null };
    }
  } catch (error) {
    // A store that is down must not stop the other policies; this one is retried next run from the start.
    outcome.error = error instanceof Error ? error.message.split("\n")[0].slice(0, 200) : String(error);
    outcome.done = true;
    return { outcome, cursor: null };
  }
}

/** One ttlCleanup tick; a repeated delivery of the same tick is skipped. */
export async function runScheduledTtlCleanup(scheduleTime: string): Promise<void> {
  const db = firestore();
  // Without MongoDB its policy has nothing to clean and jobs notify nobody.
  const mongo = mongoConfigured() ? mongoDb : undefined;
  const outcome = await runOnce(
    db,
    "ttlCleanup",
    scheduleTime,
    async () => {
      const result = await runTtlCleanup({
        db,
        clock: systemClock,
        policies: retentionPolicies({
          routingDecisionsDays: ROUTING_DECISIONS_RETENTION_DAYS.value(),
          alertsDays: ALERTS_RETENTION_DAYS.value(),
          auditDays: AUDIT_RETENTION_DAYS.value(),
          operationQueueHours: OPERATION_QUEUE_RETENTION_HOURS.value(),
          lanceVersionHours: LANCEDB_VERSION_RETENTION_HOURS.value(),
        }).filter((policy) => policy.store !== "mongodb" || mongo),
        // Job holds expire through their job (the jobs module owns them); others through credits.
        releaseExpiredHold: expireHolds({ rtdb: realtimeDb(), mongo, redis: redis() }),
        rtdb: realtimeDb,
        mongo,
        lance: lanceDb,
        budgetMs: TTL_TIME_BUDGET_SECONDS.value() * 1000,
        pageSize: TTL_PAGE_SIZE.value(),
      });
      for (const policy of result.policies) {
        if (policy.error) logs.ttlPolicyFailed(policy.policy, policy.error);
        else {
          logs.ttlPolicyApplied({
            policy: policy.policy,
            matched: policy.matched,
            applied: policy.applied,
            skipped: policy.skipped,
            pages: policy.pages,
            done: policy.done,
          });
        }
      }
      logs.ttlCleanupFinished({ complete: result.complete, policies: result.policies.length });
    },
    { leaseMs: 600_000, retainDays: 2 },
  );
  if (outcome !== "done") logs.scheduleSkipped("ttlCleanup", outcome);
}
