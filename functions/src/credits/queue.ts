/**
 * The offline operation queue: clients write operations to RTDB
 * `operation_queues/{uid}/{opId}` (e.g. while offline); this applies each once.
 *
 * The op id is the idempotency key, so however often and in whatever order the
 * trigger fires, the spend happens once and every delivery writes back the
 * same outcome. Entries that already carry a `status` are outcomes written by
 * this code, not new work.
 */
import type { Database } from "firebase-admin/database";
import type { Firestore } from "firebase-admin/firestore";
import type { RedisGateway } from "../adapters/redis";
import { parseInput, rejectPrototypeKeys, toHttpsError } from "../shared/callable";
import { DomainError } from "../shared/errors";
import type { Clock } from "../shared/time";
import { systemClock } from "../shared/time";
import { spendCredits } from "./operations";
import type { RateLimiter } from "./ratelimit";
import { queuedOperation } from "./schemas";

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
export async function applyQueuedOperation(deps: QueueDeps, uid: string, opId: string, value: unknown): Promise<QueueOutcome> {
  if (value === null || typeof value !== "object") return "ignored"; // deleted
  if ("status" in value) return "ignored"; // an outcome already written back
  const clock = deps.clock ?? systemClock;
  let writeBack: Record<string, unknown>;
  let outcome: QueueOutcome;
  try {
    rejectPrototypeKeys(value);
    const operation = parseInput(queuedOperation, value);
    if (deps.limiter) await deps.limiter.enforce("spend", uid);
    const result = await spendCredits(
      { db: deps.db, clock, lock: deps.lock },
      uid,
      { feature: operation.feature, quantity: operation.quantity, idempotency_key: `op:${opId}`, metadata: operation.metadata },
      `user:${uid}`,
    );
    const { replayed: _replayed, ...stable } = result;
    writeBack = { status: "applied", result: stable, error: null };
    outcome = "applied";
  } catch (error) {
    // Rate limiting is transient: leave the entry pending for the platform's retry.
    if (error instanceof DomainError && error.code === "resource-exhausted") throw error;
    const httpsError = toHttpsError(error, "applyQueuedOperation");
    if (httpsError.code === "internal") throw error; // infrastructure trouble: retry, don't reject
    writeBack = { status: "rejected", result: null, error: { code: httpsError.code, message: httpsError.message, details: httpsError.details ?? null } };
    outcome = "rejected";
  }
  // Write back only onto the client's entry if it still exists, never resurrecting a deleted one.
  // (Clients cannot delete entries; only retention removes them, after they carry a status.
  // A transaction is no help here: its first pass sees null for any uncached node.)
  const ref = deps.rtdb.ref(`${OPERATION_QUEUES}/${uid}/${opId}`);
  const current = (await ref.once("value")).val() as unknown;
  if (current !== null && typeof current === "object" && !("status" in current)) {
    await ref.update({ ...writeBack, processed_at: clock.now().getTime() });
  }
  return outcome;
}
