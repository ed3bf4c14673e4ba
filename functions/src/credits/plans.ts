/**
 * Plans and their monthly allowances.
 *
 * A user's plan is `users/{uid}.tier`; `config/plans` says what each plan
 * grants per period (a calendar month in UTC): `monthly_allowance` credits as
 * a lot of source `allowance` that expires at the period's end, and what of
 * the previous period's allowance rolls over (`rollover: {max}`).
 *
 * The user document records the allowance state, written in the transaction
 * that grants it, so each period is granted once per user whatever runs it
 * (`grantAllowances` hourly, `setPlan` at once):
 *   allowance_period   the period (`YYYY-MM`) last granted
 *   allowance_granted  the allowance credits granted for it (what an upgrade tops up)
 *   allowance_lot      the lot they went into (what the next period rolls over from)
 *
 * An upgrade mid-period grants the new allowance less what the period already
 * granted (never negative); a downgrade applies from the next period.
 */
import type { Firestore, Transaction } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import { DomainError, InvalidInput, NotFound } from "../shared/errors";
import { logs } from "../shared/logs";
import { systemClock, type Clock } from "../shared/time";
import { idempotentTransaction, type IdempotencyScope, type IdempotentDeps } from "./idempotency";
import {
  expireLot,
  postEntry,
  readAccount,
  readLotsFor,
  TRANSACTION_ATTEMPTS,
  type Account,
  type Change,
} from "./ledger";
import { DEFAULT_PRIORITY, expiredOf, lotIdOf } from "./lots";
import { PlansConfig, type PlanConfig, type SetPlanInput } from "./schemas";

export const PLANS_CONFIG = { collection: "config", doc: "plans" } as const;

export const DEFAULT_PLANS: PlansConfig = {
  plans: {
    free: { monthly_allowance: 50, rollover: "none" },
    pro: { monthly_allowance: 2_000, rollover: "none" },
  },
};

/** The plan of a user without a `tier` (new accounts are created with `tier: "free"`). */
export const DEFAULT_TIER = "free";

/**
 * Reads `config/plans`; a missing document means the defaults, an invalid one
 * is logged and the defaults are used, so one bad edit does not stop allowances.
 */
export async function loadPlans(db: Firestore): Promise<PlansConfig> {
  const snapshot = await db.collection(PLANS_CONFIG.collection).doc(PLANS_CONFIG.doc).get();
  if (!snapshot.exists) return DEFAULT_PLANS;
  const parsed = PlansConfig.safeParse(snapshot.data());
  if (parsed.success) return parsed.data;
  logs.plansConfigInvalid(parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`).join("; "));
  return DEFAULT_PLANS;
}

/** A calendar month in UTC: `YYYY-MM`, from its first instant to the next month's. */
export interface Period {
  id: string;
  start: Date;
  end: Date;
}

export function periodOf(at: Date): Period {
  const year = at.getUTCFullYear();
  const month = at.getUTCMonth();
  return {
    id: `${year}-${String(month + 1).padStart(2, "0")}`,
    start: new Date(Date.UTC(year, month, 1)),
    end: new Date(Date.UTC(year, month + 1, 1)),
  };
}

function previousPeriod(period: Period): Period {
  return periodOf(new Date(period.start.getTime() - 1));
}

/** The allowance state recorded on the user document. */
interface AllowanceState {
  period: string | null;
  granted: number;
  lot: string | null;
}

function allowanceState(fields: Record<string, unknown>): AllowanceState {
  return {
    period: typeof fields.allowance_period === "string" ? fields.allowance_period : null,
    granted: typeof fields.allowance_granted === "number" ? fields.allowance_granted : 0,
    lot: typeof fields.allowance_lot === "string" ? fields.allowance_lot : null,
  };
}

export function tierOf(account: Account): string {
  return typeof account.fields.tier === "string" ? account.fields.tier : DEFAULT_TIER;
}

/** Whether the account's current period still needs its allowance. */
export function allowanceDue(account: Account, period: Period): boolean {
  return allowanceState(account.fields).period !== period.id;
}

interface AllowanceStep {
  uid: string;
  plan: PlanConfig;
  tier: string;
  period: Period;
  now: Date;
  actor: string;
  /** The key the allowance entry records (the period's for a period grant, the request's for an upgrade). */
  idempotencyKey: string;
}

/**
 * Grants what the period still owes `account` under `step.plan`, in the
 * caller's transaction (the account read, nothing written yet), and records
 * the state on the user document. A period not yet granted gets the plan's
 * whole allowance, and, if the plan rolls over and the previous period was
 * granted, up to `max` of what that period's allowance lot had left when it
 * expired (expiring it now if retention has not yet), into the new lot. A
 * period already granted gets the difference when the plan grants more than
 * it did (an upgrade). Returns the credits granted.
 */
export async function grantAllowance(
  tx: Transaction,
  db: Firestore,
  account: Account,
  step: AllowanceStep,
): Promise<number> {
  const state = allowanceState(account.fields);
  const newPeriod = state.period !== step.period.id;
  const priority = step.plan.allowance_priority ?? DEFAULT_PRIORITY.allowance;
  const add = { kind: "add", source: "allowance", priority, expiresAt: step.period.end } as const;
  const lotId = lotIdOf(step.uid, "allowance", priority, step.period.end);
  const rollFrom =
    newPeriod && step.plan.rollover !== "none" && state.lot && state.period === previousPeriod(step.period).id
      ? state.lot
      : null;
  const allowance = newPeriod ? step.plan.monthly_allowance : Math.max(0, step.plan.monthly_allowance - state.granted);

  // Every read first: the lot rolled over from, and the lot the credits go into.
  if (rollFrom)
    await readLotsFor(tx, db, account, { amount: 0, heldDelta: 0, lots: { kind: "lapse", lotId: rollFrom } }, step.now);
  await readLotsFor(tx, db, account, { amount: 1, heldDelta: 0, lots: add }, step.now);

  let granted = 0;
  const grant = (amount: number, reason: string, idempotencyKey: string) => {
    const change: Change = {
      type: "grant",
      amount,
      heldDelta: 0,
      actor: step.actor,
      reason,
      idempotencyKey,
      lots: add,
    };
    postEntry(tx, db, account, change);
    granted += amount;
  };
  if (rollFrom && step.plan.rollover !== "none" && account.lots) {
    expireLot(tx, db, account, rollFrom, step.actor);
    const rolled = Math.min(step.plan.rollover.max, expiredOf(account.lots, rollFrom));
    if (rolled > 0) grant(rolled, `allowance rollover from ${state.period}`, `rollover:${step.uid}:${step.period.id}`);
  }
  if (allowance > 0) {
    grant(
      allowance,
      newPeriod
        ? `allowance ${step.period.id} (${step.tier})`
        : `allowance ${step.period.id} (upgrade to ${step.tier})`,
      step.idempotencyKey,
    );
  }
  if (!account.exists) return granted;
  const { FieldValue } = firestoreValues();
  tx.set(
    account.ref,
    {
      allowance_period: step.period.id,
      allowance_granted: newPeriod ? step.plan.monthly_allowance : Math.max(state.granted, step.plan.monthly_allowance),
      allowance_lot: allowance > 0 || granted > 0 ? lotId : state.lot,
      updated_at: FieldValue.serverTimestamp(),
    },
    { merge: true },
  );
  return granted;
}

export interface SetPlanResult {
  user_id: string;
  tier: string;
  period_start: string;
  period_end: string;
}

/**
 * Admin: puts a user on a plan. Writes `users/{uid}.tier` and grants what the
 * current period owes under the new plan: the whole allowance if the period
 * was not granted yet, the difference for an upgrade; nothing for a downgrade
 * (it applies from the next period).
 */
export async function setPlan(
  deps: IdempotentDeps,
  adminUid: string,
  input: SetPlanInput,
): Promise<SetPlanResult & { replayed: boolean }> {
  const plans = await loadPlans(deps.db);
  const plan = plans.plans[input.tier];
  if (!plan) {
    throw new InvalidInput(`Invalid input (tier: unknown plan; known: ${Object.keys(plans.plans).join(", ")})`, [
      { path: "tier", message: `unknown plan; known: ${Object.keys(plans.plans).join(", ")}`, code: "custom" },
    ]);
  }
  const clock = deps.clock ?? systemClock;
  const actor = `admin:${adminUid}`;
  const scope: IdempotencyScope = {
    owner: `admin>${input.user_id}`,
    operation: "setPlan",
    key: input.idempotency_key,
    params: { user_id: input.user_id, tier: input.tier },
  };
  return idempotentTransaction(deps, input.user_id, scope, async (tx, account): Promise<SetPlanResult> => {
    const now = clock.now();
    const period = periodOf(now);
    const granted = await grantAllowance(tx, deps.db, account, {
      uid: input.user_id,
      plan,
      tier: input.tier,
      period,
      now,
      actor,
      idempotencyKey: allowanceDue(account, period) ? allowanceKey(input.user_id, period) : input.idempotency_key,
    });
    // A deleted account keeps its ledger; only credits re-open it (ledger.ts), a plan alone does not.
    if (account.closed && granted === 0) throw new NotFound("Credit account");
    const { FieldValue } = firestoreValues();
    tx.set(
      account.ref,
      { tier: input.tier, updated_at: FieldValue.serverTimestamp(), updated_by: actor },
      { merge: true },
    );
    return {
      user_id: input.user_id,
      tier: input.tier,
      period_start: period.start.toISOString(),
      period_end: period.end.toISOString(),
    };
  });
}

/** The key of a period's allowance: at most one per user and period. */
export function allowanceKey(uid: string, period: Period): string {
  return `allowance:${uid}:${period.id}`;
}

export type AllowanceOutcome = "granted" | "current" | "no-account";

/** The scheduled grant for one user: the current period's allowance if it is still due. */
export async function grantUserAllowance(
  db: Firestore,
  uid: string,
  plans: PlansConfig,
  clock: Clock = systemClock,
): Promise<AllowanceOutcome> {
  return db.runTransaction(
    async (tx): Promise<AllowanceOutcome> => {
      const account = await readAccount(tx, db, uid);
      if (!account.exists) return "no-account";
      const now = clock.now();
      const period = periodOf(now);
      if (!allowanceDue(account, period)) return "current";
      const tier = tierOf(account);
      const plan = plans.plans[tier];
      if (!plan)
        throw new DomainError("failed-precondition", `No plan ${tier} in config/plans.`, {
          reason: "unknown-tier",
          tier,
        });
      await grantAllowance(tx, db, account, {
        uid,
        plan,
        tier,
        period,
        now,
        actor: ALLOWANCE_ACTOR,
        idempotencyKey: allowanceKey(uid, period),
      });
      return "granted";
    },
    { maxAttempts: TRANSACTION_ATTEMPTS },
  );
}

export const ALLOWANCE_ACTOR = "system:grantAllowances";
