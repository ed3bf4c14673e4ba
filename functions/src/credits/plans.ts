/**
 * Plans and their monthly allowances.
 *
 * A user's plan is `users/{uid}.tier`; `config/plans` says what each plan
 * grants per period (a calendar month in UTC): `monthly_allowance` credits as
 * a lot of source `allowance` that expires at the period's end, and what of
 * the previous period's allowance rolls over (`rollover: {max}`).
 *
 * Each period granted leaves a record `credit_allowances/allowance:{uid}:{period}`
 * (`granted`: the allowance credits granted for it, what an upgrade tops up;
 * `lot_id`: the lot they went into, what the next period rolls over from),
 * written in the transaction that grants, so a period is granted once per user
 * whatever runs it (`grantAllowances` hourly, `setPlan` at once), also across
 * the deletion and re-opening of an account (the record, like the ledger, is
 * kept). `users/{uid}.allowance_period` repeats the last period granted, so
 * the hourly pass can skip users without a transaction; the record decides.
 *
 * An upgrade mid-period grants the new allowance less what the period already
 * granted (never negative); a downgrade applies from the next period.
 */
import type { DocumentReference, Firestore, Transaction } from "firebase-admin/firestore";
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
  runCreditTransaction,
  type Account,
  type Change,
} from "./ledger";
import { DEFAULT_PRIORITY, expiredOf, legacyLotId, lotIdOf, lotRef } from "./lots";
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

export const ALLOWANCES = "credit_allowances";

/** The key of a period's allowance (and the id of its record): at most one per user and period. */
export function allowanceKey(uid: string, period: Period): string {
  return `allowance:${uid}:${period.id}`;
}

/** A period's record: the allowance credits it granted, and the lot they went into. */
interface AllowanceRecord {
  granted: number;
  lotId: string;
}

/** The period's record, and the previous period's when the plan rolls over (nothing else needs it). */
async function readRecords(
  tx: Transaction,
  db: Firestore,
  uid: string,
  plan: PlanConfig,
  period: Period,
): Promise<{ current: AllowanceRecord | null; previous: AllowanceRecord | null }> {
  const snapshots = await tx.getAll(...recordRefs(db, uid, plan, period));
  const [current, previous = null] = snapshots.map((snapshot) =>
    snapshot.exists ? { granted: Number(snapshot.get("granted")), lotId: String(snapshot.get("lot_id")) } : null,
  );
  return { current, previous };
}

function recordRefs(db: Firestore, uid: string, plan: PlanConfig, period: Period): DocumentReference[] {
  const periods = plan.rollover === "none" ? [period] : [period, previousPeriod(period)];
  return periods.map((each) => db.collection(ALLOWANCES).doc(allowanceKey(uid, each)));
}

export function tierOf(account: Account): string {
  return typeof account.fields.tier === "string" ? account.fields.tier : DEFAULT_TIER;
}

interface AllowanceStep {
  uid: string;
  plan: PlanConfig;
  tier: string;
  period: Period;
  now: Date;
  actor: string;
  /** Only a period not yet granted (the schedule); otherwise an upgrade tops it up too (setPlan). */
  onlyIfDue: boolean;
  /** The key an upgrade's top-up records (its request's); a period's grant records the period's. */
  requestKey?: string;
}

export type AllowanceOutcome = "granted" | "current" | "no-account";

/**
 * Grants what the period still owes `account` under `step.plan`, in the
 * caller's transaction (the account read, nothing written yet), and records
 * it. A period not yet granted gets the plan's whole allowance, and, if the
 * plan rolls over and the previous period was granted, up to `max` of what
 * that period's allowance lot had left when it expired (expiring it now if
 * retention has not yet), into the new lot. A period already granted gets the
 * difference when the plan grants more than it did (an upgrade), unless
 * `onlyIfDue`.
 */
export async function grantAllowance(
  tx: Transaction,
  db: Firestore,
  account: Account,
  step: AllowanceStep,
): Promise<{ outcome: AllowanceOutcome; granted: number }> {
  const records = await readRecords(tx, db, step.uid, step.plan, step.period);
  const newPeriod = records.current === null;
  if (!newPeriod && step.onlyIfDue) return { outcome: "current", granted: 0 };
  const alreadyGranted = records.current?.granted ?? 0;
  const allowance = Math.max(0, step.plan.monthly_allowance - alreadyGranted);
  const priority = step.plan.allowance_priority ?? DEFAULT_PRIORITY.allowance;
  const add = { kind: "add", source: "allowance", priority, expiresAt: step.period.end } as const;
  const rollFrom = newPeriod && step.plan.rollover !== "none" ? (records.previous?.lotId ?? null) : null;
  const periodKey = allowanceKey(step.uid, step.period);

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
    const from = previousPeriod(step.period).id;
    if (rolled > 0) grant(rolled, `allowance rollover from ${from}`, `rollover:${step.uid}:${step.period.id}`);
  }
  if (allowance > 0) {
    const reason = newPeriod
      ? `allowance ${step.period.id} (${step.tier})`
      : `allowance ${step.period.id} (upgrade to ${step.tier})`;
    grant(allowance, reason, newPeriod ? periodKey : (step.requestKey ?? periodKey));
  }
  const { FieldValue } = firestoreValues();
  if (newPeriod || allowance > 0) {
    tx.set(db.collection(ALLOWANCES).doc(periodKey), {
      user_id: step.uid,
      period: step.period.id,
      tier: step.tier,
      granted: alreadyGranted + allowance,
      lot_id: lotIdOf(step.uid, "allowance", priority, step.period.end),
      updated_at: FieldValue.serverTimestamp(),
    });
  }
  // A hint for the hourly pass (the record decides); it never brings a closed account's document back.
  if (account.exists) tx.set(account.ref, { allowance_period: step.period.id }, { merge: true });
  return { outcome: newPeriod ? "granted" : "current", granted };
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
    const { granted } = await grantAllowance(tx, deps.db, account, {
      uid: input.user_id,
      plan,
      tier: input.tier,
      period,
      now,
      actor,
      onlyIfDue: false,
      requestKey: input.idempotency_key,
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

/** The scheduled grant for one user: the current period's allowance if it is still due. */
export async function grantUserAllowance(
  db: Firestore,
  uid: string,
  plans: PlansConfig,
  clock: Clock = systemClock,
): Promise<AllowanceOutcome> {
  return runCreditTransaction(db, (tx) => grantDueAllowance(tx, db, uid, plans, clock.now()));
}

/**
 * The scheduled grant's work in `tx`: a real transaction (grantUserAllowance)
 * or a prefetched one whose writes are guarded and batched with other users'
 * (allowances.ts); the same reads and writes either way.
 */
export async function grantDueAllowance(
  tx: Transaction,
  db: Firestore,
  uid: string,
  plans: PlansConfig,
  now: Date,
): Promise<AllowanceOutcome> {
  const account = await readAccount(tx, db, uid);
  if (!account.exists) return "no-account";
  const tier = tierOf(account);
  const plan = plans.plans[tier];
  if (!plan)
    throw new DomainError("failed-precondition", `No plan ${tier} in config/plans.`, {
      reason: "unknown-tier",
      tier,
    });
  const { outcome } = await grantAllowance(tx, db, account, {
    uid,
    plan,
    tier,
    period: periodOf(now),
    now,
    actor: ALLOWANCE_ACTOR,
    onlyIfDue: true,
  });
  return outcome;
}

/**
 * The documents grantDueAllowance reads for a user whose document holds `data`, so a batch of users can fetch
 * them at once: the period's allowance record, and the previous one's if the plan rolls over; the lot the
 * allowance goes into, the legacy lot of a user from before lots, and, for a plan that rolls over, the previous
 * period's allowance lot as the plan would have made it (its record says; a guess missed is read later).
 */
export function allowanceReadRefs(
  db: Firestore,
  uid: string,
  plans: PlansConfig,
  now: Date,
  data: Record<string, unknown>,
): DocumentReference[] {
  const plan = plans.plans[typeof data.tier === "string" ? data.tier : DEFAULT_TIER];
  if (!plan) return [];
  const priority = plan.allowance_priority ?? DEFAULT_PRIORITY.allowance;
  const period = periodOf(now);
  const ids = [lotIdOf(uid, "allowance", priority, period.end)];
  if (typeof data.lots_since_version !== "number") ids.push(legacyLotId(uid));
  if (plan.rollover !== "none") ids.push(lotIdOf(uid, "allowance", priority, previousPeriod(period).end));
  return [...recordRefs(db, uid, plan, period), ...ids.map((id) => lotRef(db, id))];
}

export const ALLOWANCE_ACTOR = "system:grantAllowances";
