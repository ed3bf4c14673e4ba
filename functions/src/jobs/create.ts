/**
 * createJob: validate, price, hold and create the job in one transaction.
 *
 * Idempotent like spending, through the same protocol (credits'
 * idempotentTransaction): the key's record, the hold's ledger entry, the hold
 * and the job commit together; a replay returns the first response; the same
 * key for another job is refused; refused requests write nothing.
 */
import { randomUUID } from "node:crypto";
import type { Firestore } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import type { RedisGateway } from "../adapters/redis";
import { idempotentTransaction, InsufficientCredits, placeHold, type IdempotencyScope } from "../credits";
import { parseInput } from "../shared/callable";
import { InvalidInput } from "../shared/errors";
import type { Clock } from "../shared/time";
import { systemClock } from "../shared/time";
import { holdIdOf, jobRef } from "./job";
import { jobType } from "./registry";
import type { CreateJobInput } from "./schemas";

/** A hold outlives its job's deadline by this much, so the jobs sweeper (not ttlCleanup) settles it with the job. */
export const HOLD_GRACE_MS = 15 * 60_000;

export interface CreatedJob {
  job_id: string;
  type: string;
  status: "queued";
  price: number;
  hold_id: string;
  deadline_at: string;
  replayed: boolean;
}

export interface CreateDeps {
  db: Firestore;
  clock?: Clock;
  lock?: RedisGateway;
}

export async function createJob(deps: CreateDeps, uid: string, request: CreateJobInput): Promise<CreatedJob> {
  const type = jobType(request.type);
  if (!type)
    throw new InvalidInput(`Unknown job type ${request.type}`, [
      { path: "type", message: "unknown job type", code: "invalid_value" },
    ]);
  const input = prefixIssues(() => parseInput(type.input, request.input));
  const price = type.price(input);
  const clock = deps.clock ?? systemClock;
  const scope: IdempotencyScope = {
    owner: `user:${uid}`,
    operation: "createJob",
    key: request.idempotency_key,
    params: { type: type.name, input },
  };
  const jobId = randomUUID().replace(/-/g, "");
  const holdId = holdIdOf(jobId);
  const { db } = deps;
  return idempotentTransaction(deps, uid, scope, async (tx, account): Promise<Omit<CreatedJob, "replayed">> => {
    // Never an account: nothing to reserve from. A closed one is refused by the ledger (account-closed).
    if (!account.exists && !account.closed) throw new InsufficientCredits(0, price);
    const now = clock.now();
    const deadline = new Date(now.getTime() + type.deadlineMs);
    await placeHold(
      tx,
      db,
      account,
      {
        holdId,
        amount: price,
        expiresAt: new Date(deadline.getTime() + HOLD_GRACE_MS),
        actor: `user:${uid}`,
        reason: `job ${type.name}`,
        idempotencyKey: request.idempotency_key,
        jobId,
      },
      clock,
    );
    const { FieldValue, Timestamp } = firestoreValues();
    tx.create(jobRef(db, jobId), {
      user_id: uid,
      type: type.name,
      input,
      status: "queued",
      price,
      hold_id: holdId,
      idempotency_key: request.idempotency_key,
      deadline_at: Timestamp.fromDate(deadline),
      progress: { stage: null, pct: 0 },
      outputs: null,
      cost: null,
      error: null,
      version: 1,
      dispatch: {
        target: type.dispatch.kind,
        destination: type.dispatch.kind === "pubsub" ? type.dispatch.topic : type.dispatch.stream,
        state: "pending",
        attempts: 0,
        lease_until: null,
        message_id: null,
        last_error: null,
      },
      routing: null,
      created_at: FieldValue.serverTimestamp(),
      updated_at: FieldValue.serverTimestamp(),
      finished_at: null,
    });
    return {
      job_id: jobId,
      type: type.name,
      status: "queued",
      price,
      hold_id: holdId,
      deadline_at: deadline.toISOString(),
    };
  });
}

/** Field issues of the type's schema, reported under `input.`. */
function prefixIssues<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if (error instanceof InvalidInput) {
      const issues = ((error.details?.issues ?? []) as Array<{ path: string; message: string; code: string }>).map(
        (issue) => ({
          ...issue,
          path: issue.path ? `input.${issue.path}` : "input",
        }),
      );
      const first = issues[0];
      throw new InvalidInput(`Invalid input (${first ? `${first.path}: ${first.message}` : "input"})`, issues);
    }
    throw error;
  }
}
