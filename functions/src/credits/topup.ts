/**
 * Auto top-up: when a change takes a user's available credits below their
 * threshold, a pending top-up `topups/{uid}_{ledger_version}` is created in
 * that change's own transaction, and the payments domain charges it.
 *
 * One owner: the ledger's posting path (postOne) asks `topUpDue` for every
 * change it posts, so every way credits go down (spends, holds, negative
 * adjustments, expiries) triggers the same way, and no caller checks it
 * again. Everything the decision needs lives on the user document the ledger
 * already read (`auto_topup`): the settings, the pack as it was when they were
 * set, the pending top-up, the credits counted this month and the consecutive
 * failures. Two concurrent spends both read and write that document, so one
 * retries and sees the other's pending top-up: at most one is pending.
 *
 * This module is the one writer of `topups` and of `users/{uid}.auto_topup`:
 * the payments domain sets the settings (configureAutoTopUp) and reports a
 * charge's outcome (settleTopUp, inside its own credit transaction).
 */
import type { DocumentSnapshot, Firestore, Transaction } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import { DomainError } from "../shared/errors";
import type { IdempotentDeps } from "./idempotency";
import { userRef, type EntryType } from "./ledger";
import { lockedCreditTransaction } from "./user-lock";

export const TOPUPS = "topups";

/** After this many declines in a row, auto top-up turns itself off (and the user is told). */
export const MAX_CONSECUTIVE_FAILURES = 3;

export type TopUpStatus = "pending" | "succeeded" | "failed";

/** What the user chose (setAutoTopUp). */
export interface AutoTopUpSettings {
  enabled: boolean;
  /** A change that leaves available credits below this starts a top-up. */
  threshold: number;
  pack_id: string;
  /** The most credits auto top-up may buy in one calendar month (UTC); pending and succeeded top-ups count. */
  monthly_cap: number;
}

/** The pack a top-up buys, as it was sold when the settings were stored. */
export interface TopUpPack {
  credits: number;
  amount: number;
  currency: string;
  /** The lot the credits go into, as for a checkout of the pack (null: purchase defaults). */
  expires_after_days: number | null;
  priority: number | null;
}

/** `users/{uid}.auto_topup`. */
export interface AutoTopUpState extends AutoTopUpSettings, TopUpPack {
  pending_topup_id: string | null;
  /** `YYYY-MM` (UTC) that `month_credits` counts. */
  month: string | null;
  month_credits: number;
  consecutive_failures: number;
  /** Why auto top-up turned itself off, while it is off for that reason. */
  disabled_reason: string | null;
}

/** `topups/{id}`. */
export interface TopUp extends TopUpPack {
  user_id: string;
  status: TopUpStatus;
  pack_id: string;
  /** The calendar month (UTC) whose cap it counts against. */
  month: string;
  /** The ledger version (and entry) whose change started it. */
  ledger_version: number;
  transaction_id: string;
  available_after: number;
  threshold: number;
  payment_id: string | null;
  payment_intent: string | null;
  failure_reason: string | null;
  /** This top-up's failure turned auto top-up off. */
  disabled_auto_topup: boolean;
}

export function topUpId(uid: string, version: number): string {
  return `${uid}_${version}`;
}

/** `YYYY-MM` of `ms`, UTC. */
export function monthOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 7);
}

/** The stored state, or null when auto top-up was never set (or the field is not ours to read). */
export function autoTopUpOf(fields: Record<string, unknown>): AutoTopUpState | null {
  const raw = fields.auto_topup as Partial<AutoTopUpState> | undefined;
  if (!raw || typeof raw !== "object" || typeof raw.enabled !== "boolean") return null;
  return {
    enabled: raw.enabled,
    threshold: Number(raw.threshold ?? 0),
    pack_id: String(raw.pack_id ?? ""),
    monthly_cap: Number(raw.monthly_cap ?? 0),
    credits: Number(raw.credits ?? 0),
    amount: Number(raw.amount ?? 0),
    currency: String(raw.currency ?? ""),
    expires_after_days: typeof raw.expires_after_days === "number" ? raw.expires_after_days : null,
    priority: typeof raw.priority === "number" ? raw.priority : null,
    pending_topup_id: typeof raw.pending_topup_id === "string" ? raw.pending_topup_id : null,
    month: typeof raw.month === "string" ? raw.month : null,
    month_credits: Number(raw.month_credits ?? 0),
    consecutive_failures: Number(raw.consecutive_failures ?? 0),
    disabled_reason: typeof raw.disabled_reason === "string" ? raw.disabled_reason : null,
  };
}

/** Changes that never start a top-up: a clawback takes back money that went back to the payer. */
const NEVER_TRIGGERS: ReadonlySet<EntryType> = new Set(["clawback"]);

/** A top-up the ledger creates with the entry that made it due. */
export interface DueTopUp {
  id: string;
  topUp: TopUp;
  state: AutoTopUpState;
}

/**
 * The top-up the change to ledger `version` starts, if any (pure): auto top-up
 * is on, none is pending, the change lowered available credits and left them
 * below the threshold, and the pack fits under this month's cap.
 */
export function topUpDue(
  fields: Record<string, unknown>,
  change: { type: EntryType; uid: string; version: number; transactionId: string },
  availableBefore: number,
  availableAfter: number,
  nowMs: number,
): DueTopUp | null {
  const state = autoTopUpOf(fields);
  if (!state?.enabled || state.pending_topup_id) return null;
  if (NEVER_TRIGGERS.has(change.type)) return null;
  if (availableAfter >= availableBefore || availableAfter >= state.threshold) return null;
  const month = monthOf(nowMs);
  const used = state.month === month ? state.month_credits : 0;
  if (state.credits <= 0 || used + state.credits > state.monthly_cap) return null;
  const id = topUpId(change.uid, change.version);
  return {
    id,
    state: { ...state, pending_topup_id: id, month, month_credits: used + state.credits },
    topUp: {
      user_id: change.uid,
      status: "pending",
      pack_id: state.pack_id,
      credits: state.credits,
      amount: state.amount,
      currency: state.currency,
      expires_after_days: state.expires_after_days,
      priority: state.priority,
      month,
      ledger_version: change.version,
      transaction_id: change.transactionId,
      available_after: availableAfter,
      threshold: state.threshold,
      payment_id: null,
      payment_intent: null,
      failure_reason: null,
      disabled_auto_topup: false,
    },
  };
}

/** Writes a due top-up (the ledger calls this in the transaction of the entry that made it due). */
export function createTopUp(tx: Transaction, db: Firestore, due: DueTopUp): void {
  const { FieldValue } = firestoreValues();
  const now = FieldValue.serverTimestamp();
  tx.create(db.collection(TOPUPS).doc(due.id), { ...due.topUp, created_at: now, updated_at: now });
}

export class NoPaymentMethod extends DomainError {
  constructor() {
    super("failed-precondition", "Save a payment method with a checkout before turning on auto top-up.", {
      reason: "no-payment-method",
    });
  }
}

/**
 * Stores the user's settings with the pack they buy (setAutoTopUp), keeping
 * the pending top-up and this month's count. Refused (NoPaymentMethod) while
 * `hasPaymentMethod` says the user document has none. Turning it on again
 * clears the failure count.
 */
export async function configureAutoTopUp(
  deps: IdempotentDeps,
  uid: string,
  settings: AutoTopUpSettings,
  pack: TopUpPack,
  hasPaymentMethod: (fields: Record<string, unknown>) => boolean,
): Promise<AutoTopUpState> {
  return lockedCreditTransaction(deps.db, deps.lock, uid, async (tx) => {
    const ref = userRef(deps.db, uid);
    const snapshot = await tx.get(ref);
    const fields = snapshot.data() ?? {};
    if (!snapshot.exists || !hasPaymentMethod(fields)) throw new NoPaymentMethod();
    const current = autoTopUpOf(fields);
    const state: AutoTopUpState = {
      ...settings,
      ...pack,
      pending_topup_id: current?.pending_topup_id ?? null,
      month: current?.month ?? null,
      month_credits: current?.month_credits ?? 0,
      consecutive_failures: settings.enabled ? 0 : (current?.consecutive_failures ?? 0),
      disabled_reason: settings.enabled ? null : (current?.disabled_reason ?? null),
    };
    const { FieldValue } = firestoreValues();
    tx.set(ref, { auto_topup: state, updated_at: FieldValue.serverTimestamp() }, { merge: true });
    return state;
  });
}

/** A charge's outcome as the payments domain reports it. */
export type TopUpOutcome =
  | { status: "succeeded"; paymentId: string; paymentIntent: string; transactionId: string | null }
  | {
      status: "failed";
      paymentId: string;
      paymentIntent: string | null;
      reason: string;
      /** A decline counts towards MAX_CONSECUTIVE_FAILURES; a charge that could not be tried does not. */
      counts: boolean;
    };

export interface TopUpSettlement {
  /** This call changed the top-up's status. */
  changed: boolean;
  /** The top-up's failure turned auto top-up off (now or before: a retried caller notifies again, idempotently). */
  disabledAutoTopUp: boolean;
  topUp: TopUp;
}

/** The reads settleTopUp needs, to make with the caller's other reads. */
export function topUpRefs(db: Firestore, topupId: string, uid: string) {
  return { topUp: db.collection(TOPUPS).doc(topupId), user: userRef(db, uid) };
}

/**
 * Records a charge's outcome (inside the caller's transaction, after its
 * reads): the top-up's status, and on the user the pending top-up, the month's
 * count and the failure count. A top-up leaves `pending` once: a second report
 * of the same outcome changes nothing. Money received outranks an earlier
 * failure report (a failed top-up may still become succeeded), never the
 * reverse.
 */
export function settleTopUp(
  tx: Transaction,
  topUpSnapshot: DocumentSnapshot,
  userSnapshot: DocumentSnapshot,
  outcome: TopUpOutcome,
): TopUpSettlement {
  const topUp = topUpSnapshot.data() as TopUp;
  const unchanged = { changed: false, disabledAutoTopUp: topUp.disabled_auto_topup === true, topUp };
  if (topUp.status === outcome.status || topUp.status === "succeeded") return unchanged;
  const { FieldValue } = firestoreValues();
  const state = autoTopUpOf(userSnapshot.data() ?? {});
  const next: AutoTopUpState | null = state ? { ...state } : null;
  const sameMonth = next !== null && next.month === topUp.month;
  if (next && next.pending_topup_id === topUpSnapshot.id) next.pending_topup_id = null;
  const update: Partial<TopUp> = { status: outcome.status, payment_id: outcome.paymentId };
  if (outcome.paymentIntent) update.payment_intent = outcome.paymentIntent;

  if (outcome.status === "succeeded") {
    if (next) {
      // Counted when it was created; a failure report took it off the count, the money puts it back.
      if (topUp.status === "failed" && sameMonth) next.month_credits += topUp.credits;
      next.consecutive_failures = 0;
    }
  } else {
    update.failure_reason = outcome.reason;
    if (next) {
      if (sameMonth) next.month_credits = Math.max(0, next.month_credits - topUp.credits);
      if (outcome.counts) next.consecutive_failures += 1;
      if (outcome.counts && next.enabled && next.consecutive_failures >= MAX_CONSECUTIVE_FAILURES) {
        next.enabled = false;
        next.disabled_reason = "consecutive-failures";
        update.disabled_auto_topup = true;
      }
    }
  }
  tx.update(topUpSnapshot.ref, { ...update, updated_at: FieldValue.serverTimestamp() });
  if (next && userSnapshot.exists) tx.set(userSnapshot.ref, { auto_topup: next }, { merge: true });
  const settled = { ...topUp, ...update };
  return { changed: true, disabledAutoTopUp: settled.disabled_auto_topup === true, topUp: settled };
}

/** Runs `body` as one credit transaction for `uid` (user lock, the ledger's retry budget). */
export function topUpTransaction<R>(
  deps: IdempotentDeps,
  uid: string,
  body: (tx: Transaction) => Promise<R>,
): Promise<R> {
  return lockedCreditTransaction(deps.db, deps.lock, uid, body);
}
