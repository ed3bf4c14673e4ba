/**
 * Low-balance notifications: once per crossing below the threshold, with hysteresis.
 *
 * A crossing is a fact of the ledger, not of delivery order: the change to
 * ledger version v crosses when the available credits at v are below the
 * threshold and those at v − 1 are not, and the alarm was armed, i.e. since
 * the last time the credits were below the threshold they have risen to
 * threshold + margin (hovering around the threshold does not notify again).
 *
 * Each event is judged on its own before/after pair, so a dip is seen by the
 * event that made it whatever order events arrive in, and a duplicate judges
 * the same. Whether the alarm was armed is read back through the ledger's
 * entries (`{uid}_v{n}`, immutable), never from state that depends on which
 * events came first. The notification's id is derived from the crossing's
 * version, so a redelivery, or a retry after a failed send, notifies once.
 */
import type { Firestore } from "firebase-admin/firestore";
import { availableAfter } from "../credits";
import type { NotificationInput } from "../notifications/notifications";

export interface LowBalancePolicy {
  threshold: number;
  /** Available must reach threshold + rearmMargin before another crossing can notify. */
  rearmMargin: number;
}

export function policyFor(threshold: number): LowBalancePolicy {
  return { threshold, rearmMargin: Math.max(1, Math.ceil(threshold * 0.25)) };
}

/** Available credits at a ledger version (the user document's state after that change). */
export interface BalancePoint {
  available: number;
  version: number;
}

export interface LowBalanceDeps {
  db: Firestore;
  /** Stores the notification once per `dedupeKey`; `created` is false for a repeat. */
  notify: (input: NotificationInput) => Promise<{ created: boolean }>;
}

/** Ledger entries read per round trip while looking back for the alarm's state. */
const LOOKBACK_CHUNK = 20;
/**
 * How far back the alarm's state is looked for. Past it (the credits hovered
 * in the band that long) the alarm counts as armed: a repeated warning is
 * better than a missed one.
 */
const LOOKBACK_LIMIT = 200;

/**
 * Judges one users/{uid} change (its before and after states) and sends the
 * crossing's notification if the change is a crossing; returns notifications created (0 or 1).
 */
export async function observeBalance(
  deps: LowBalanceDeps,
  uid: string,
  before: BalancePoint | undefined,
  after: BalancePoint,
  policy: LowBalancePolicy,
): Promise<number> {
  if (after.available >= policy.threshold || after.version < 1) return 0;
  // A write that did not move the ledger (a console edit) is not a ledger change: no crossing.
  if (before && before.version >= after.version) return 0;
  const previous =
    before && before.version === after.version - 1
      ? before.available
      : await availableAt(deps.db, uid, after.version - 1);
  if (previous !== undefined && previous < policy.threshold) return 0;
  if (!(await armedBefore(deps.db, uid, after.version - 1, previous, policy))) return 0;
  const { created } = await deps.notify({
    userId: uid,
    type: "low_balance",
    toastMessage: `Your credits are running low (${Math.max(after.available, 0)} left).`,
    urgency: "high",
    persistent: false,
    dedupeKey: `low_balance:${uid}:v${after.version}`,
  });
  return created ? 1 : 0;
}

/**
 * Whether the alarm was armed at `version` (whose available credits are
 * `available`, at or above the threshold): walks back to the newest version
 * at or above threshold + margin (armed) or below the threshold (still
 * disarmed). An unknown state (version 0, a missing entry, the lookback
 * limit) counts as armed.
 */
async function armedBefore(
  db: Firestore,
  uid: string,
  version: number,
  available: number | undefined,
  policy: LowBalancePolicy,
): Promise<boolean> {
  const rearmAt = policy.threshold + policy.rearmMargin;
  if (available === undefined || available >= rearmAt) return true;
  const oldest = Math.max(1, version - LOOKBACK_LIMIT);
  for (let newest = version - 1; newest >= oldest; newest -= LOOKBACK_CHUNK) {
    const versions = Array.from(
      { length: Math.min(LOOKBACK_CHUNK, newest - oldest + 1) },
      (_, index) => newest - index,
    );
    const points = await availableAfter(db, uid, versions);
    for (const point of points) {
      if (point === undefined || point >= rearmAt) return true;
      if (point < policy.threshold) return false;
    }
  }
  return true;
}

/** How long before credits expire the user is warned. */
export const EXPIRY_WARNING_MS = 3 * 86_400_000;

/**
 * Warns once when credits worth at least `threshold` (LOW_BALANCE_THRESHOLD)
 * expire within 3 days: `nextExpiry` is the user's next expiry (the unheld
 * credits of the active lots sharing the earliest `expires_at`). One
 * notification per user and expiry instant (its dedupe key), however many
 * balance changes see it. Returns notifications created (0 or 1).
 */
export async function observeExpiring(
  deps: Pick<LowBalanceDeps, "notify">,
  uid: string,
  nextExpiry: { amount: number; at: number } | null,
  now: Date,
  threshold: number,
): Promise<number> {
  if (!nextExpiry || nextExpiry.amount < Math.max(1, threshold)) return 0;
  const left = nextExpiry.at - now.getTime();
  if (left <= 0 || left > EXPIRY_WARNING_MS) return 0;
  const { created } = await deps.notify({
    userId: uid,
    type: "credits-expiring",
    toastMessage: `${nextExpiry.amount} of your credits expire on ${new Date(nextExpiry.at).toISOString().slice(0, 10)}.`,
    urgency: "normal",
    persistent: false,
    dedupeKey: `credits_expiring:${uid}:${nextExpiry.at}`,
  });
  return created ? 1 : 0;
}

/**
 * Available credits after ledger version `version`; undefined when unknown: a
 * missing entry, or version 0 (before the first change, which counts as above
 * the threshold and armed, so a first change below it notifies).
 */
async function availableAt(db: Firestore, uid: string, version: number): Promise<number | undefined> {
  return (await availableAfter(db, uid, [version]))[0];
}
