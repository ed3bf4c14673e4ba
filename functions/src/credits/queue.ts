/**
 * The offline operation queue: clients write operations to RTDB
 * `operation_queues/{uid}/{opId}` (e.g. while offline); this applies each once.
 *
 * The op id is the idempotency key, and its record owns the answer: a spend
 * and a refusal decided in the spend's transaction (e.g. insufficient credits)
 * are both recorded there, so however often and in whatever order the trigger
 * fires, even after a top-up, every delivery gets the first answer back and
 * the status never changes once written (invariant 11). Entries that already
 * carry a `status` are outcomes written by this code, not new work.
 */
import type { Database } from "firebase-admin/database";
import type { Firestore } from "firebase-admin/firestore";
import type { RedisGateway } from "../adapters/redis";
import { parseInput, rejectPrototypeKeys, toHttpsError } from "../shared/callable";
import { DomainError } from "../shared/errors";
import type { Clock } from "../shared/time";
import { systemClock } from "../shared/time";
import { spendCredits } from "./operations";
import type { RateLimiter } from "./rate-limit";
import { QueuedOperation } from "./schemas";

export const OPERATION_QUEUES = "operation_queues";

export interface QueueDeps {
  db: Firestore;
  lock?: RedisGateway;
  rtdb: Database;
  limiter?: RateLimiter;
  clock?: Clock;
}

export type QueueOutcome = "applied" | "rejected" | "ignored";

/** Applies the entry `value` at operation_queues/{uid}/{opId}; writes status/result/error back. */
export async function applyQueuedOperation(
  deps: QueueDeps,
  uid: string,
  opId: string,
  value: unknown,
): Promise<QueueOutcome> {
  if (value === null || typeof value !== "object") return "ignored"; // deleted
  // An outcome already written back; a rejected entry is not retried by later deliveries.
  if ("status" in value) return "ignored";
  const clock = deps.clock ?? systemClock;
  let writeBack: Record<string, unknown>;
  let outcome: QueueOutcome;
  try {
    rejectPrototypeKeys(value);
    const operation = parseInput(QueuedOperation, value);
    // The limit is checked with the user lock's first try, in one Redis round trip (see spend.ts).
    const result = await spendCredits(
      { db: deps.db, clock, lock: deps.lock },
      uid,
      {
        feature: operation.feature,
        quantity: operation.quantity,
        idempotency_key: `op:${opId}`,
        metadata: operation.metadata,
      },
      `user:${uid}`,
      { finalRejections: true, gate: deps.limiter?.gate("spend", uid) },
    );
    const { replayed: _replayed, ...stable } = result;
    writeBack = { status: "applied", result: stable, error: null };
    outcome = "applied";
  } catch (error) {
    // Rate limiting is transient: leave the entry pending for the platform's retry.
    if (error instanceof DomainError && error.code === "resource-exhausted") throw error;
    const httpsError = toHttpsError(error, "applyQueuedOperation");
    if (httpsError.code === "internal") throw error; // infrastructure trouble: retry, don't reject
    writeBack = {
      status: "rejected",
      result: null,
      error: { code: httpsError.code, message: httpsError.message, details: httpsError.details ?? null },
    };
    outcome = "rejected";
  }
  // Every delivery carries the recorded answer, so the first write-back stands and later ones change nothing.
  // A null node is answered with null: a no-op if it is really gone (never resurrected), and if it is
  // only not cached yet, the server refuses the guess and runs the function again with the real value.
  const ref = deps.rtdb.ref(`${OPERATION_QUEUES}/${uid}/${opId}`);
  await ref.transaction((current: unknown) => {
    if (current === null) return null;
    if (typeof current !== "object") return undefined;
    if ("status" in current) return undefined;
    return { ...current, ...writeBack, processed_at: clock.now().getTime() };
  });
  return outcome;
}
