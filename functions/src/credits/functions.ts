/**
 * The credits capability's functions: declarations only; the work is in
 * operations.ts, meter.ts, queue.ts and closure.ts.
 */
import { onFirstRead } from "../shared/lazy-export";
import { firestore, realtimeDb } from "../adapters/firebase";
import { redis } from "../adapters/redis";
import { mongoConfigured, mongoDb } from "../adapters/mongo";
import { ALLOWANCE_PAGE_SIZE, ALLOWANCE_TIME_BUDGET_SECONDS, LOW_BALANCE_THRESHOLD, METERING_API_KEY } from "../config";
import { callable } from "../shared/callable";
import { apiKeyEndpoint } from "../shared/http";
import { logs } from "../shared/logs";
import { meterUsage as meter } from "./meter";
import {
  adjustCredits as adjust,
  getBalance as balanceOf,
  grantCredits as grant,
  listTransactions as list,
  refundCredits as refund,
  type BalanceWithLots,
} from "./operations";
import { listLots as lotsOf, summaryCurrent } from "./lot-views";
import { applyQueuedOperation, OPERATION_QUEUES } from "./queue";
import { spendLimiter } from "./rate-limit";
import { spendAsUser } from "./spend";
import { BalanceCache, readThrough } from "../mirror/cache";
import {
  AdjustInput,
  BalanceInput,
  GrantInput,
  ListLotsInput,
  ListTransactionsInput,
  MeterInput,
  RefundInput,
  SetPlanInput,
  SpendInput,
} from "./schemas";

/**
 * Served cache-aside from Redis; see mirror/cache.ts for why a stale value
 * cannot win. The lots summary is cached with the balance (both change only
 * with a ledger version), unless its next expiry has passed since (then it is
 * read again); `next_expiry.at` is answered as ISO 8601.
 */
export const getBalance = callable({
  name: "getBalance",
  access: "user",
  schema: BalanceInput,
  handler: async (input, caller) => {
    const state = await readThrough(
      new BalanceCache(redis()),
      caller.uid,
      input.min_version ?? 0,
      () => balanceOf({ db: firestore() }, caller.uid),
      (hit): hit is BalanceWithLots =>
        "lots" in hit && "debt" in hit && summaryCurrent((hit as BalanceWithLots).lots, Date.now()),
    );
    const next = state.lots.next_expiry;
    return {
      ...state,
      lots: { ...state.lots, next_expiry: next ? { amount: next.amount, at: new Date(next.at).toISOString() } : null },
    };
  },
});

export const listLots = callable({
  name: "listLots",
  access: "user",
  schema: ListLotsInput,
  handler: (input, caller) => lotsOf(firestore(), caller.uid, input),
});

export const spendCredits = callable({
  name: "spendCredits",
  access: "user",
  schema: SpendInput,
  handler: (input, caller) =>
    spendAsUser({ db: firestore(), redis: redis(), limiter: spendLimiter() }, caller.uid, input),
});

export const listTransactions = callable({
  name: "listTransactions",
  access: "user",
  schema: ListTransactionsInput,
  handler: (input, caller) => list({ db: firestore(), lock: redis() }, caller.uid, input),
});

export const grantCredits = callable({
  name: "grantCredits",
  access: "admin",
  schema: GrantInput,
  handler: (input, caller) => grant({ db: firestore(), lock: redis() }, caller.uid, input),
});

export const refundCredits = callable({
  name: "refundCredits",
  access: "admin",
  schema: RefundInput,
  handler: (input, caller) => refund({ db: firestore(), lock: redis() }, caller.uid, input),
});

export const adjustCredits = callable({
  name: "adjustCredits",
  access: "admin",
  schema: AdjustInput,
  handler: (input, caller) => adjust({ db: firestore(), lock: redis() }, caller.uid, input),
});

/** Admin: puts a user on a plan and grants what the current period owes under it (see plans.ts). */
export const setPlan = callable({
  name: "setPlan",
  access: "admin",
  schema: SetPlanInput,
  handler: async (input, caller) => {
    const { setPlan: putOnPlan } = await import("./plans");
    return putOnPlan({ db: firestore(), lock: redis() }, caller.uid, input);
  },
});

/**
 * HTTPS `meterUsage`: the app's own servers meter a user's usage.
 *
 *   POST /meterUsage
 *   Authorization: Bearer <METERING_API_KEY>
 *   {"user_id": "...", "feature": "chat.message", "quantity": 3, "idempotency_key": "...", "metadata": {...}}
 *
 * Same pricing, idempotency, rate limits and errors as spendCredits; errors
 * come back as {error: {status, message, details}} with the matching HTTP
 * status. 201 for a new spend, 200 for a replay.
 */
export const meterUsage = apiKeyEndpoint({
  name: "meterUsage",
  secret: METERING_API_KEY,
  schema: MeterInput,
  handler: async (input) => {
    const result = await meter({ db: firestore(), lock: redis(), limiter: spendLimiter() }, input);
    return { status: result.replayed ? 200 : 201, body: { result } };
  },
});

/** RTDB trigger for operation_queues/{uid}/{opId}: applies each queued operation once (see queue.ts). */
export const applyOperationQueue = onFirstRead(() => {
  const { onValueWritten } =
    require("firebase-functions/v2/database") as typeof import("firebase-functions/v2/database");
  return onValueWritten({ ref: `${OPERATION_QUEUES}/{uid}/{opId}`, retry: true, timeoutSeconds: 60 }, async (event) => {
    const outcome = await applyQueuedOperation(
      { db: firestore(), rtdb: realtimeDb(), limiter: spendLimiter(), lock: redis() },
      event.params.uid,
      event.params.opId,
      event.data.after.val(),
    );
    logs.queuedOperation(event.params.uid, event.params.opId, outcome);
  });
});

/** Firestore trigger for a deleted `users/{uid}`: closes the credit account (see closure.ts). */
export const onUserDeleted = onFirstRead(() => {
  const { onDocumentDeleted } =
    require("firebase-functions/v2/firestore") as typeof import("firebase-functions/v2/firestore");
  return onDocumentDeleted({ document: "users/{uid}", retry: true, timeoutSeconds: 120 }, async (event) => {
    // Loaded here: closing an account fails its jobs, so it brings the jobs module the callables never need.
    const { closeAccount } = await import("./closure");
    const { jobFailer } = await import("../jobs/finish");
    const db = firestore();
    const result = await closeAccount(
      { db, failJob: jobFailer({ db, rtdb: realtimeDb() }) },
      event.params.uid,
      deletedVersion(event.data?.get("ledger_version")),
    );
    logs.accountClosed(event.params.uid, event.id, result.jobsFailed, result.holdsReleased, result.errors.length);
    // What settled stays settled; a retry settles the rest and skips what is done.
    if (result.errors.length > 0)
      throw new Error(`account ${event.params.uid} not fully closed: ${result.errors.join("; ")}`);
  });
});

/**
 * Hourly: grants each user the allowance of the period (calendar month, UTC)
 * once, within a time budget, resuming where the last run stopped (see
 * allowances.ts); then, with what is left of the budget (at least a page),
 * warns the users whose credits expire within 3 days (mirror/expiry-warnings.ts):
 * both are the hourly pass over lots, and the warning must not wait for the
 * user to change their balance. A repeated delivery of the same tick is skipped.
 */
export const grantAllowances = onFirstRead(() => {
  const { onSchedule } = require("firebase-functions/v2/scheduler") as typeof import("firebase-functions/v2/scheduler");
  return onSchedule({ schedule: "every 60 minutes", timeoutSeconds: 540, retryCount: 0 }, async (event) => {
    const { grantAllowances } = await import("./allowances");
    const { runOnce } = await import("../shared/dedupe");
    const db = firestore();
    const outcome = await runOnce(
      db,
      "grantAllowances",
      event.scheduleTime,
      async () => {
        const started = performance.now();
        const budgetMs = ALLOWANCE_TIME_BUDGET_SECONDS.value() * 1000;
        const run = await grantAllowances({ db, budgetMs, pageSize: ALLOWANCE_PAGE_SIZE.value() });
        logs.allowancesRun({
          period: run.period,
          complete: run.complete,
          scanned: run.scanned,
          granted: run.granted,
          current: run.current,
          failed: run.failed.length,
          alone: run.alone,
        });
        // Without MongoDB there is nowhere to warn (logged once by mongoConfigured).
        if (!mongoConfigured()) return;
        const { warnExpiringCredits } = await import("../mirror/expiry-warnings");
        const { notify } = await import("../notifications/notifications");
        const mongo = await mongoDb();
        const warnings = await warnExpiringCredits({
          db,
          notify: (input) => notify({ mongo, redis: redis() }, input),
          threshold: LOW_BALANCE_THRESHOLD.value(),
          budgetMs: Math.max(0, budgetMs - (performance.now() - started)),
          pageSize: ALLOWANCE_PAGE_SIZE.value(),
        });
        logs.expiryWarningsRun({ ...warnings });
      },
      { leaseMs: 600_000, retainDays: 2 },
    );
    if (outcome !== "done") logs.scheduleSkipped("grantAllowances", outcome);
  });
});

/** The deleted document's ledger version; a document without one never had credits work to settle. */
function deletedVersion(value: unknown): number {
  return typeof value === "number" && Number.isSafeInteger(value) ? value : 0;
}
