/**
 * Low-balance notifications: once per crossing below the threshold, with hysteresis.
 *
 * State per user in `low_balance_state/{uid}`: whether the alarm is armed,
 * the number of crossings so far, how many were notified, and the newest
 * ledger version seen. A crossing is counted when an armed user's available
 * credits fall below the threshold; the alarm re-arms only once they rise to
 * threshold + margin, so hovering around the threshold does not notify again.
 * Stale and duplicate deliveries (version not newer) change no state; the
 * notification itself has a deterministic id per crossing, and an unsent one
 * is sent on the next delivery, so none is lost or doubled.
 */
import type { Firestore } from "firebase-admin/firestore";
import type { NotificationInput } from "../notifications/notify";

export const LOW_BALANCE_STATE = "low_balance_state";

export interface LowBalancePolicy {
  threshold: number;
  /** Available must reach threshold + rearmMargin before another crossing can notify. */
  rearmMargin: number;
}

export function policyFor(threshold: number): LowBalancePolicy {
  return { threshold, rearmMargin: Math.max(1, Math.ceil(threshold * 0.25)) };
}

interface State {
  armed: boolean;
  crossings: number;
  notified: number;
  version: number;
}

export interface LowBalanceDeps {
  db: Firestore;
  notify: (input: NotificationInput) => Promise<unknown>;
}

/** Feeds one user-document state (newest available credits at `version`) to the alarm; returns notifications sent. */
export async function observeBalance(deps: LowBalanceDeps, uid: string, available: number, version: number, policy: LowBalancePolicy): Promise<number> {
  const ref = deps.db.collection(LOW_BALANCE_STATE).doc(uid);
  const state = await deps.db.runTransaction(async (tx) => {
    const snapshot = await tx.get(ref);
    const current: State = snapshot.exists
      ? (snapshot.data() as State)
      : { armed: true, crossings: 0, notified: 0, version: 0 };
    if (version <= current.version) return current;
    const next: State = { ...current, version };
    if (current.armed && available < policy.threshold) {
      next.armed = false;
      next.crossings += 1;
    } else if (!current.armed && available >= policy.threshold + policy.rearmMargin) {
      next.armed = true;
    }
    tx.set(ref, next);
    return next;
  });
  let sent = 0;
  for (let crossing = state.notified + 1; crossing <= state.crossings; crossing++) {
    await deps.notify({
      userId: uid,
      type: "low_balance",
      toastMessage: `Your credits are running low (${Math.max(available, 0)} left).`,
      urgency: "high",
      persistent: false,
      dedupeKey: `low_balance:${uid}:${crossing}`,
    });
    sent += 1;
  }
  if (state.crossings > state.notified) {
    // Only ever moves forward, so concurrent deliveries cannot lower it.
    await deps.db.runTransaction(async (tx) => {
      const latest = (await tx.get(ref)).data() as State;
      if (latest.notified < state.crossings) tx.update(ref, { notified: state.crossings });
    });
  }
  return sent;
}
