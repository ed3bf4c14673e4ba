/**
 * At-least-once delivery made once: the one mechanism every event-triggered
 * function uses.
 *
 * Each event gets a marker `processed_events/{consumer}:{eventId}` with an
 * `expire_at` (swept by the retention policy and by Firestore's native TTL).
 * - Work done inside a Firestore transaction calls `claimInTransaction`, which
 *   reads the marker and writes it in the same transaction: exactly once.
 * - Other work goes through `runOnce`: a lease marker is created before the
 *   work (a concurrent duplicate sees it and skips), marked done after, and
 *   removed if the work fails so the platform's retry can run it again.
 *   Such work must itself be idempotent (deterministic ids, version guards),
 *   because a crash between the work and the "done" mark re-runs it.
 */
import type { DocumentReference, Firestore, Transaction } from "firebase-admin/firestore";
import type { Clock } from "./time";
import { DAY_MS, systemClock } from "./time";

export const PROCESSED_EVENTS = "processed_events";

export interface DedupeOptions {
  /** How long the marker is kept (and so how late a duplicate is still caught). */
  retainDays?: number;
  /** How long a claimed-but-unfinished event blocks duplicates. */
  leaseMs?: number;
  clock?: Clock;
}

export function markerRef(db: Firestore, consumer: string, eventId: string): DocumentReference {
  // Event ids may contain '/', which a document id may not.
  return db.collection(PROCESSED_EVENTS).doc(`${consumer}:${eventId}`.replace(/\//g, "_"));
}

/** Inside a transaction: false when the event was already processed; otherwise marks it (commits with the transaction). */
export async function claimInTransaction(
  tx: Transaction,
  db: Firestore,
  consumer: string,
  eventId: string,
  options: DedupeOptions = {},
): Promise<boolean> {
  const ref = markerRef(db, consumer, eventId);
  const snapshot = await tx.get(ref);
  if (snapshot.exists && snapshot.get("status") === "done") return false;
  const now = (options.clock ?? systemClock).now();
  tx.set(ref, {
    consumer,
    event_id: eventId,
    status: "done",
    processed_at: now,
    expire_at: new Date(now.getTime() + (options.retainDays ?? 7) * DAY_MS),
  });
  return true;
}

/**
 * "in-progress": another delivery holds the lease. Callers whose platform redelivers should throw then,
 * so the event is retried after the lease (a holder that crashed never marks it done).
 */
export type RunOnceOutcome = "done" | "duplicate" | "in-progress";

function leaseUntilOf(now: Date, leaseMs: number): number {
  return now.getTime() + leaseMs;
}

/** Runs `work` unless this event was processed or is being processed; see the module comment. */
export async function runOnce(
  db: Firestore,
  consumer: string,
  eventId: string,
  work: () => Promise<void>,
  options: DedupeOptions = {},
): Promise<RunOnceOutcome> {
  const ref = markerRef(db, consumer, eventId);
  const clock = options.clock ?? systemClock;
  const leaseMs = options.leaseMs ?? 120_000;
  const claimed = await db.runTransaction(async (tx): Promise<RunOnceOutcome | "claimed"> => {
    const snapshot = await tx.get(ref);
    const now = clock.now();
    if (snapshot.exists) {
      if (snapshot.get("status") === "done") return "duplicate";
      const leaseUntil = snapshot.get("lease_until") as { toMillis(): number } | undefined;
      if (leaseUntil && leaseUntil.toMillis() > now.getTime()) return "in-progress";
    }
    tx.set(ref, {
      consumer,
      event_id: eventId,
      status: "running",
      lease_until: new Date(leaseUntilOf(now, leaseMs)),
      expire_at: new Date(now.getTime() + (options.retainDays ?? 7) * DAY_MS),
    });
    return "claimed";
  });
  if (claimed !== "claimed") return claimed;
  const ourLease = leaseUntilOf(clock.now(), leaseMs);
  try {
    await work();
  } catch (error) {
    // Give the event back for the retry, unless our lease ran out and another delivery holds it now.
    await db
      .runTransaction(async (tx) => {
        const current = await tx.get(ref);
        const lease = current.get("lease_until") as { toMillis(): number } | null | undefined;
        if (current.exists && current.get("status") === "running" && lease && lease.toMillis() <= ourLease)
          tx.delete(ref);
      })
      .catch(() => undefined);
    throw error;
  }
  await ref.update({ status: "done", processed_at: clock.now(), lease_until: null });
  return "done";
}
